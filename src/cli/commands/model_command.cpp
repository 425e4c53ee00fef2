// cortex model random: write a GPT-2 with deterministic random weights and the real vocabulary.
// cortex model info: print a model's shape and format.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands/commands.h"
#include "model/gpt2_weights.h"
#include "model/random_model.h"
#include "model/weight_types.h"
#include "util/error.h"

#ifndef CORTEX_DEFAULT_VOCAB_DIR
#define CORTEX_DEFAULT_VOCAB_DIR ""
#endif

namespace cortex::cli {

std::string default_vocab_dir() {
  const char* env = std::getenv("CORTEX_VOCAB_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(CORTEX_DEFAULT_VOCAB_DIR);
}

void add_model_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("model", "Create and inspect model files");
  cmd->require_subcommand(1);

  struct RandomOptions {
    std::string shape = "tiny", out, format = "safetensors", vocab;
    uint64_t seed = 0;
    std::string dtype = "f32";
  };
  auto o = std::make_shared<RandomOptions>();
  auto* random = cmd->add_subcommand("random", "Write a GPT-2 with deterministic random weights N(0, 0.02)");
  random->add_option("--shape", o->shape, "tiny, 124M, 355M, 774M or 1.5B")->capture_default_str();
  random->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  random->add_option("--out", o->out, "Output folder (safetensors) or .gguf file (gguf)")->required();
  random->add_option("--format", o->format, "safetensors or gguf")
      ->check(CLI::IsMember({"safetensors", "gguf"}))
      ->capture_default_str();
  random->add_option("--dtype", o->dtype, "GGUF only: type of the matrices, f32, f16 or q8_0")
      ->capture_default_str();
  random->add_option("--vocab", o->vocab,
                     "Folder with encoder.json + vocab.bpe (default: the installed GPT-2 one)");
  random->callback([o] {
    model::RandomModelOptions ro;
    ro.config = model::Gpt2Config::from_shape_name(o->shape);
    ro.seed = o->seed;
    ro.format = o->format == "gguf" ? model::WeightFormat::kGguf : model::WeightFormat::kSafetensors;
    ro.vocab_dir = o->vocab.empty() ? default_vocab_dir() : o->vocab;
    ro.out = o->out;
    ro.gguf_dtype = model::parse_dtype(o->dtype);
    model::write_random_model(ro);
    std::fprintf(stderr, "wrote a random GPT-2 %s (%s, seed %llu) to %s\n", o->shape.c_str(),
                 o->format.c_str(), static_cast<unsigned long long>(o->seed), o->out.c_str());
  });

  auto path = std::make_shared<std::string>();
  auto* info = cmd->add_subcommand("info", "Print a model's format and shape as JSON");
  info->add_option("--model", *path, "Model folder or .gguf file")->required();
  info->callback([path] {
    auto w = model::Gpt2Weights::load(*path);
    const auto& c = w->config();
    nlohmann::json j = {{"format", w->format()},      {"dtype", model::dtype_flag_name(w->dtype())},
                        {"vocab_size", c.vocab_size}, {"n_ctx", c.n_ctx},
                        {"n_embd", c.n_embd},         {"n_layer", c.n_layer},
                        {"n_head", c.n_head},         {"parameters", c.parameter_count()}};
    std::cout << j.dump(2) << "\n";
  });
}

}  // namespace cortex::cli
