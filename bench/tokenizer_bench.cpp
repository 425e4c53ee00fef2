#include "bench/tokenizer_bench.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"
#include "util/file_util.h"
#include "util/subprocess.h"

namespace cortex::bench {

namespace {

constexpr int kPasses = 4;
constexpr int kTrials = 5;
constexpr size_t kChunkBytes = 1024;

std::string read_corpus(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return read_file(path);
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) text += read_file(f);
  if (text.empty()) throw not_found("no text in the tokenizer benchmark corpus " + path);
  return text;
}

// Lines grouped into chunks of at most kChunkBytes (a longer line is a chunk of its own).
std::vector<std::string> chunk(const std::string& text) {
  std::vector<std::string> chunks;
  std::string current;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    if (!current.empty() && current.size() + (end - pos) > kChunkBytes) {
      chunks.push_back(std::move(current));
      current.clear();
    }
    current.append(text, pos, end - pos);
    pos = end;
  }
  if (!current.empty()) chunks.push_back(std::move(current));
  return chunks;
}

// Same checksum as reference_encode_bench.js (all intermediate values stay below 2^53).
uint64_t checksum_step(uint64_t h, int32_t id) {
  return (h * 31 + static_cast<uint64_t>(id) + 1) % 2147483647;
}

}  // namespace

TokenizerBenchResult run_tokenizer_bench(const std::string& vocab_dir, const std::string& corpus_path,
                                         const std::string& node_script_path) {
  using Clock = std::chrono::steady_clock;
  const std::vector<std::string> chunks = chunk(read_corpus(corpus_path));
  size_t chunk_bytes = 0;
  for (const auto& c : chunks) chunk_bytes += c.size();

  TokenizerBenchResult result;
  result.bytes = chunk_bytes * kPasses;

  // Ours.
  uint64_t checksum = 0;
  size_t one_pass_tokens = 0;
  {
    const auto t = tokenizer::BpeTokenizer::load(vocab_dir);
    for (const auto& c : chunks) {
      for (int32_t id : t->encode(c)) {
        checksum = checksum_step(checksum, id);
        ++one_pass_tokens;
      }
    }
  }
  result.tokens = one_pass_tokens * kPasses;
  std::vector<double> seconds;
  std::vector<int32_t> ids;
  for (int trial = 0; trial < kTrials; ++trial) {
    const auto t = tokenizer::BpeTokenizer::load(vocab_dir);
    size_t tokens = 0;
    const auto start = Clock::now();
    for (int pass = 0; pass < kPasses; ++pass) {
      for (const auto& c : chunks) {
        ids.clear();
        t->encode(c, &ids);
        tokens += ids.size();
      }
    }
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (tokens != result.tokens) throw Error(ErrorCode::kInternal, "token count changed between passes");
  }
  std::sort(seconds.begin(), seconds.end());
  result.ours_mb_per_s = static_cast<double>(result.bytes) / seconds[seconds.size() / 2] / 1e6;

  // The reference.
  const ProcessResult out =
      run_process({"node", node_script_path, "--package", vocab_dir, "--passes", std::to_string(kPasses),
                   "--trials", std::to_string(kTrials)},
                  nlohmann::json(chunks).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (out.exit_code != 0) {
    std::string err = out.err.substr(0, 500);
    std::replace(err.begin(), err.end(), '\n', ' ');
    throw Error(ErrorCode::kInternal,
                "node " + node_script_path + " exited with " + std::to_string(out.exit_code) + ": " + err);
  }
  try {
    const auto j = nlohmann::json::parse(out.out);
    result.reference_mb_per_s = j.at("mb_per_s").get<double>();
    result.outputs_match = j.at("tokens").get<size_t>() == result.tokens &&
                           j.at("checksum").get<uint64_t>() == checksum &&
                           j.at("bytes").get<size_t>() == result.bytes;
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kInternal, "unreadable output from " + node_script_path + ": " + e.what());
  }
  return result;
}

}  // namespace cortex::bench
