// cortex generate: load a model, continue a prompt, stream the text to stdout; timings to stderr.
#include <cstdio>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/progress_bar.h"
#include "model/generator.h"
#include "model/model_loader.h"
#include "model/weight_types.h"
#include "tokenizer/utf8_stream_decoder.h"
#include "util/clock.h"

namespace cortex::cli {

void add_generate_command(CLI::App& app) {
  struct Options {
    std::string model, prompt;
    int max_tokens = 64;
    model::SamplingParams sampling;
    bool ignore_eos = false;
    int threads = 0;
    std::string dtype;
    std::string kv_cache_dtype;
    std::string converted_cache = default_converted_cache_dir();
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a GPT-2 model");
  cmd->add_option(
         "--model", o->model,
         "Model folder (Hugging Face layout) or .gguf file, or a URI: file://, s3://, https://, hf://")
      ->required();
  cmd->add_option("--prompt,-p", o->prompt, "Text to continue")->required();
  cmd->add_option("-n,--max-tokens", o->max_tokens, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", o->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Sample from the k most likely tokens (0 = all)")
      ->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling threshold")->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past <|endoftext|>");
  cmd->add_option("--threads", o->threads, "Compute threads (default: all cores)");
  cmd->add_option("--dtype", o->dtype, "Weight type: f32, f16 or q8_0 (default: as stored)");
  cmd->add_option(
      "--kv-cache-dtype", o->kv_cache_dtype,
      "KV cache type: f32, or f16 for half its memory and the attention's reads (default: f16 for "
      "f16 and q8_0 weights, f32 for f32)");
  add_converted_cache_option(*cmd, o->converted_cache);
  cmd->callback([o] {
    model::ModelOptions mo;
    if (!o->dtype.empty()) mo.dtype = model::parse_dtype(o->dtype);
    if (!o->kv_cache_dtype.empty()) mo.kv_cache_dtype = model::parse_kv_cache_dtype(o->kv_cache_dtype);
    mo.converted_cache_dir = converted_cache_dir(o->converted_cache);
    mo.threads =
        o->threads > 0 ? o->threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto load_start = SteadyClock::now();
    auto loaded = model::load_model(local_model_path(o->model), mo);
    double load_s = seconds_since(load_start);
    auto prompt = loaded.tokenizer->encode(o->prompt);
    model::GenerateOptions go;
    go.max_tokens = o->max_tokens;
    go.sampling = o->sampling;
    go.ignore_eos = o->ignore_eos;
    go.eos_id = loaded.tokenizer->eos_id();
    tokenizer::Utf8StreamDecoder decoder;
    auto result = model::generate(*loaded.model, prompt, go, [&](int32_t t) {
      std::string piece = decoder.push(loaded.tokenizer->token_bytes(t));
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::string tail = decoder.finish();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);  // the text first, then the timings on stderr, also when both go to one pipe
    const size_t n = result.tokens.size();
    const std::string converted = loaded.model->weights().converted().where();
    std::fprintf(stderr,
                 "load %.2f s%s | prompt %zu tokens, %.1f tok/s | generated %zu tokens, %.1f tok/s (%s)\n",
                 load_s, converted.empty() ? "" : (" (converted weights: " + converted + ")").c_str(),
                 prompt.size(), prompt.size() / std::max(result.prefill_seconds, 1e-9), n,
                 n > 1 ? (n - 1) / std::max(result.decode_seconds, 1e-9) : 0.0, result.finish_reason.c_str());
  });
}

}  // namespace cortex::cli
