// GPT-2's byte-level BPE tokenizer, byte-exact with OpenAI's encoder (and with the npm package
// gpt-3-encoder, which the tests use as the reference).
//
// Encoding: the pre-tokenizer (pretokenizer.h) splits the text into words; each word's UTF-8 bytes
// start as one symbol per byte (the token whose byte-level string is that byte's printable stand-in,
// see bytes_to_unicode in OpenAI's encoder.py); then, repeatedly, the adjacent pair with the lowest merge
// rank is merged everywhere in the word (left to right, non-overlapping), until no adjacent pair has a
// rank. The ids of the remaining symbols are the word's tokens.
//
// Thread-safety: a loaded tokenizer is immutable except for an internal, internally synchronised cache
// of word encodings (bounded, sharded by hash); every const method may be called from any number of
// threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cortex::tokenizer {

namespace detail {

// Immutable hash table from an adjacent pair of symbol ids to (merge rank, id of the merged symbol).
// Open addressing with linear probing; built once at load.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t merged = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  explicit MergeTable(size_t expected_entries = 0);
  // Adds or replaces (a later rank wins, as in OpenAI's dict(zip(merges, range(...)))) a merge.
  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged);
  // The merge of (left, right), or nullptr when that pair has no rank.
  const Entry* find(int32_t left, int32_t right) const {
    const uint64_t key = make_key(left, right);
    size_t i = slot(key);
    for (;;) {
      const Entry& e = entries_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static uint64_t make_key(int32_t left, int32_t right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  void grow();

  std::vector<Entry> entries_;
  size_t mask_ = 0;
  unsigned shift_ = 64;
  size_t size_ = 0;
};

// Applies BPE merges to the symbols symbols[0..n) in place and returns the new count. Two algorithms
// with identical results: a simple one, O(n^2) in the worst case but fastest for the short words that
// dominate text, and one with a priority queue, O(n log n), used for long words. Exposed for tests.
size_t bpe_merge_simple(const MergeTable& merges, int32_t* symbols, size_t n);
size_t bpe_merge_heap(const MergeTable& merges, int32_t* symbols, size_t n);

class WordCache;

// Hash for unordered containers keyed by std::string that are looked up by std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace detail

class BpeTokenizer {
 public:
  // The text of GPT-2's end-of-text token.
  static constexpr std::string_view kEndOfText = "<|endoftext|>";

  // Loads a vocabulary from folder `dir`: `vocab.json` + `merges.txt` (Hugging Face names) when both are
  // present, otherwise `encoder.json` + `vocab.bpe` (OpenAI's names). Throws Error: kNotFound (one line
  // naming the folder and the files it looked for) when neither pair is there; kCorruptData naming the
  // file when a file is malformed (invalid JSON, ids not 0..n-1, a merges line that is not two tokens,
  // a merge whose parts or result are not in the vocabulary, a byte without a token).
  // Cost: parses ~1.5 MB of text; ~45 ms here.
  static std::unique_ptr<BpeTokenizer> load(const std::string& dir);

  // Builds a tokenizer from what a GGUF file carries: tokens[i] is the byte-level string of id i (as
  // in encoder.json) and each merge is a line "left right" (as in vocab.bpe, whose "#version" header,
  // if present as the first entry, is skipped). Throws Error (kCorruptData) like load().
  static std::unique_ptr<BpeTokenizer> from_tokens(std::vector<std::string> tokens,
                                                   const std::vector<std::string>& merges);

  ~BpeTokenizer();
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // Token ids of `text`, treating everything as ordinary text (a literal "<|endoftext|>" is encoded as
  // the characters it is made of). Equals gpt-3-encoder's encode() for valid UTF-8. Invalid UTF-8 is
  // encoded byte for byte (each invalid byte is its own pre-token of class "other"), so that
  // decode(encode(x)) == x for every byte string x.
  std::vector<int32_t> encode(std::string_view text) const;
  // Same as encode(), appending to *out.
  void encode(std::string_view text, std::vector<int32_t>* out) const;
  // Like encode(), but each literal "<|endoftext|>" becomes eos_id(); the text between them is
  // encoded independently (as tiktoken does with allowed_special). Equals encode() when the vocabulary
  // has no end-of-text token.
  std::vector<int32_t> encode_with_special(std::string_view text) const;

  // The raw bytes of `ids` concatenated (not necessarily valid UTF-8: a character may be split across
  // tokens; see Utf8StreamDecoder). Throws Error (kInvalidArgument) naming the first id that is out
  // of range.
  std::string decode(std::span<const int32_t> ids) const;
  // The raw bytes of one token. Throws Error (kInvalidArgument) when `id` is out of range.
  const std::string& token_bytes(int32_t id) const;
  // The byte-level string of one token (as in encoder.json). Throws like token_bytes().
  const std::string& token_string(int32_t id) const;
  // The id of the token whose byte-level string is `byte_level_string` (e.g. "Ġthe"), if any.
  std::optional<int32_t> token_id(std::string_view byte_level_string) const;

  // Id of "<|endoftext|>" (50256 in GPT-2), or -1 when the vocabulary has none.
  int32_t eos_id() const { return eos_id_; }
  // Number of token ids (50257 in GPT-2).
  size_t vocab_size() const { return tokens_.size(); }

 private:
  // Names used in error messages: the vocabulary, the merges and how their entries are counted.
  struct Sources {
    std::string vocab;
    std::string merges;
    std::string merge_unit;     // "line" or "entry"
    size_t first_merge_number;  // the number of merges[0]
  };

  BpeTokenizer();
  static std::unique_ptr<BpeTokenizer> build(std::vector<std::string> tokens,
                                             const std::vector<std::string>& merges, const Sources& where);
  void check_id(int32_t id) const;
  void encode_word(std::string_view word, std::vector<int32_t>* out) const;

  std::vector<std::string> tokens_;       // id -> byte-level string
  std::vector<std::string> token_bytes_;  // id -> raw bytes
  std::unordered_map<std::string, int32_t, detail::StringHash, std::equal_to<>> ids_;  // byte-level -> id
  int32_t byte_ids_[256] = {};  // byte -> id of its single-byte token
  detail::MergeTable merges_;
  int32_t eos_id_ = -1;
  std::unique_ptr<detail::WordCache> cache_;
};

}  // namespace cortex::tokenizer
