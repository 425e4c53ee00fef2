// Each command adds its subcommand (flags and callback) to the application.
#pragma once

#include <CLI/CLI.hpp>

namespace cortex::cli {

void add_tokenize_commands(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_model_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_serve_command(CLI::App& app);

// Folder of the GPT-2 vocabulary used by `cortex model random`: $CORTEX_VOCAB_DIR, else the one that
// scripts/setup.sh installed.
std::string default_vocab_dir();

}  // namespace cortex::cli
