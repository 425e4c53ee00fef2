// cortex tokenize / detokenize: text on stdin -> JSON ids on stdout, and back.
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands/commands.h"
#include "model/model_loader.h"
#include "util/error.h"

namespace cortex::cli {

namespace {
std::string read_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}
}  // namespace

void add_tokenize_commands(CLI::App& app) {
  struct Options {
    std::string model;
    bool special = false;
  };
  auto opts = std::make_shared<Options>();
  auto* tok = app.add_subcommand("tokenize", "Read text on stdin, print its GPT-2 token ids as a JSON array");
  tok->add_option("--model", opts->model, "Model folder or .gguf file (its vocabulary is used)")->required();
  tok->add_flag("--special", opts->special, "Recognise <|endoftext|> in the text as the special token");
  tok->callback([opts] {
    auto tokenizer = model::load_tokenizer(opts->model);
    std::string text = read_stdin();
    auto ids = opts->special ? tokenizer->encode_with_special(text) : tokenizer->encode(text);
    std::cout << nlohmann::json(ids).dump() << "\n";
  });

  auto dopts = std::make_shared<Options>();
  auto* detok = app.add_subcommand("detokenize", "Read a JSON array of token ids on stdin, print the text");
  detok->add_option("--model", dopts->model, "Model folder or .gguf file (its vocabulary is used)")
      ->required();
  detok->callback([dopts] {
    auto tokenizer = model::load_tokenizer(dopts->model);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_stdin());
    } catch (const nlohmann::json::exception& e) {
      throw invalid_argument(std::string("stdin: expected a JSON array of token ids: ") + e.what());
    }
    if (!j.is_array()) throw invalid_argument("stdin: expected a JSON array of token ids");
    std::vector<int32_t> ids;
    for (const auto& v : j) {
      if (!v.is_number_integer())
        throw invalid_argument("stdin: token ids must be integers, got " + v.dump());
      ids.push_back(v.get<int32_t>());
    }
    std::cout << tokenizer->decode(ids);
  });
}

}  // namespace cortex::cli
