// cortex: one binary with subcommands. This file only wires the commands and maps errors to exit codes.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands/commands.h"
#include "util/error.h"
#include "util/logging.h"

int main(int argc, char** argv) {
  CLI::App app{"cortex: deploy GPT-2 models as services"};
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.set_version_flag("--version", "cortex 0.1.0");
  cortex::cli::add_deploy_commands(app);
  cortex::cli::add_get_commands(app);
  cortex::cli::add_logs_command(app);
  cortex::cli::add_predict_command(app);
  cortex::cli::add_operator_commands(app);
  cortex::cli::add_completion_command(app);
  cortex::cli::add_tokenize_commands(app);
  cortex::cli::add_generate_command(app);
  cortex::cli::add_model_command(app);
  cortex::cli::add_bench_command(app);
  cortex::cli::add_serve_command(app);
  cortex::cli::add_pull_command(app);
  cortex::cli::add_cache_command(app);
  app.parse_complete_callback([&] { cortex::init_logging(log_level); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with code 0; a command line that cannot be parsed is bad input.
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const cortex::Error& e) {
    std::cerr << "cortex: error: " << e.what() << "\n";
    return e.code() == cortex::ErrorCode::kInvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "cortex: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
