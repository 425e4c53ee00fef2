// Each command adds its subcommand (flags and callback) to the application.
#pragma once

#include <CLI/CLI.hpp>

namespace cortex::cli {

void add_tokenize_commands(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_model_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_operator_commands(CLI::App& app);  // operator, cluster up|down|info
void add_deploy_commands(CLI::App& app);    // deploy, delete, refresh
void add_get_commands(CLI::App& app);       // get, describe
void add_logs_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_completion_command(CLI::App& app);
void add_pull_command(CLI::App& app);
void add_cache_command(CLI::App& app);  // cache ls|rm|prune

// Adds --converted-cache to a command that loads a model: where weights converted on load (a --dtype
// other than the file's) are kept, written once and mapped by every process that loads the model in
// that type (Gpt2Weights::load), or "off" to convert in memory. `value` starts as the default.
void add_converted_cache_option(CLI::App& cmd, std::string& value);
// The folder the option names: "" for "off".
std::string converted_cache_dir(const std::string& value);
// The default: $CORTEX_HOME/cache/converted.
std::string default_converted_cache_dir();

// Folder of the GPT-2 vocabulary used by `cortex model random`: $CORTEX_VOCAB_DIR, else the one that
// scripts/setup.sh installed.
std::string default_vocab_dir();

}  // namespace cortex::cli
