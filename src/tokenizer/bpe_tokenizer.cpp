#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <nlohmann/json.hpp>

#include "tokenizer/pretokenizer.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::tokenizer {

namespace detail {

// ---------------------------------------------------------------------------------------------------
// MergeTable

MergeTable::MergeTable(size_t expected_entries) {
  size_t cap = 16;
  while (cap < expected_entries * 2) cap *= 2;
  entries_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - static_cast<unsigned>(std::countr_zero(cap));
}

void MergeTable::grow() {
  std::vector<Entry> old = std::move(entries_);
  const size_t cap = old.size() * 2;
  entries_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - static_cast<unsigned>(std::countr_zero(cap));
  for (const Entry& e : old) {
    if (e.key == kEmpty) continue;
    size_t i = slot(e.key);
    while (entries_[i].key != kEmpty) i = (i + 1) & mask_;
    entries_[i] = e;
  }
}

void MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > entries_.size()) grow();
  const uint64_t key = make_key(left, right);
  size_t i = slot(key);
  while (entries_[i].key != kEmpty && entries_[i].key != key) i = (i + 1) & mask_;
  if (entries_[i].key == kEmpty) ++size_;
  entries_[i] = Entry{key, rank, merged};
}

// ---------------------------------------------------------------------------------------------------
// Merge algorithms. Both implement OpenAI's loop exactly:
//   while True:
//     bigram = min(pairs, key=rank); if bigram has no rank: break
//     merge every occurrence of bigram, left to right, non-overlapping
// (Different pairs never share a rank, so "the lowest rank" is always one pair.)

size_t bpe_merge_simple(const MergeTable& merges, int32_t* s, size_t n) {
  if (n < 2) return n;
  constexpr size_t kInline = 64;
  const MergeTable::Entry* inline_pairs[kInline];
  std::vector<const MergeTable::Entry*> heap_pairs;
  const MergeTable::Entry** pair = inline_pairs;
  if (n - 1 > kInline) {
    heap_pairs.resize(n - 1);
    pair = heap_pairs.data();
  }
  for (size_t i = 0; i + 1 < n; ++i) pair[i] = merges.find(s[i], s[i + 1]);
  for (;;) {
    size_t best = SIZE_MAX;
    int32_t best_rank = INT32_MAX;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (pair[i] != nullptr && pair[i]->rank < best_rank) {
        best_rank = pair[i]->rank;
        best = i;
      }
    }
    if (best == SIZE_MAX) break;
    const int32_t a = s[best], b = s[best + 1], merged = pair[best]->merged;
    size_t out = best, j = best;
    while (j < n) {
      if (j + 1 < n && s[j] == a && s[j + 1] == b) {
        s[out++] = merged;
        j += 2;
      } else {
        s[out++] = s[j++];
      }
    }
    n = out;
    if (n < 2) break;
    for (size_t i = best > 0 ? best - 1 : 0; i + 1 < n; ++i) pair[i] = merges.find(s[i], s[i + 1]);
  }
  return n;
}

size_t bpe_merge_heap(const MergeTable& merges, int32_t* s, size_t n) {
  if (n < 2) return n;
  // A doubly linked list over positions; a merged pair lives on at its left position, the right one is
  // marked dead (-1). Candidates are validated when popped (lazy deletion).
  constexpr uint32_t kNil = UINT32_MAX;
  std::vector<uint32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? kNil : static_cast<uint32_t>(i - 1);
    next[i] = i + 1 == n ? kNil : static_cast<uint32_t>(i + 1);
  }
  struct Candidate {
    int32_t rank;
    uint32_t pos;
    int32_t left, right, merged;
  };
  // std::push_heap builds a max-heap; "greater" puts the lowest (rank, pos) on top.
  auto later = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::vector<Candidate> heap, pending;
  heap.reserve(n);
  for (size_t i = 0; i + 1 < n; ++i) {
    if (const auto* e = merges.find(s[i], s[i + 1])) {
      heap.push_back({e->rank, static_cast<uint32_t>(i), s[i], s[i + 1], e->merged});
    }
  }
  std::make_heap(heap.begin(), heap.end(), later);
  auto add = [&](uint32_t pos) {
    const uint32_t q = next[pos];
    if (q == kNil) return;
    if (const auto* e = merges.find(s[pos], s[q])) pending.push_back({e->rank, pos, s[pos], s[q], e->merged});
  };
  while (!heap.empty()) {
    // One pass of the reference loop: every candidate of the lowest rank, left to right. Pairs formed
    // during the pass join the queue only after it, as the reference only looks at them afterwards.
    const int32_t rank = heap.front().rank;
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const Candidate c = heap.back();
      heap.pop_back();
      if (s[c.pos] != c.left) continue;
      const uint32_t q = next[c.pos];
      if (q == kNil || s[q] != c.right) continue;
      s[c.pos] = c.merged;
      s[q] = -1;
      next[c.pos] = next[q];
      if (next[q] != kNil) prev[next[q]] = c.pos;
      if (prev[c.pos] != kNil) add(prev[c.pos]);
      add(c.pos);
    }
    for (const Candidate& c : pending) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), later);
    }
    pending.clear();
  }
  size_t out = 0;
  for (uint32_t i = 0; i != kNil; i = next[i]) s[out++] = s[i];
  return out;
}

// ---------------------------------------------------------------------------------------------------
// WordCache: word bytes -> token ids. Sharded by hash, one mutex per shard; a shard that reaches its
// capacity is cleared (cheap, bounded, and text re-warms it quickly). Ids are stored packed in a
// std::string so that words of up to 3 tokens (almost all) need no allocation beyond the node.

class WordCache {
 public:
  static constexpr size_t kShards = 16;
  static constexpr size_t kEntriesPerShard = 4096;
  static constexpr size_t kMaxWordBytes = 128;

  // Appends the cached ids of `word` to *out and returns true, or returns false.
  bool lookup(std::string_view word, size_t hash, std::vector<int32_t>* out) {
    Shard& shard = shards_[hash % kShards];
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(word);
    if (it == shard.map.end()) return false;
    const std::string& packed = it->second;
    const size_t count = packed.size() / sizeof(int32_t);
    const size_t old = out->size();
    out->resize(old + count);
    std::memcpy(out->data() + old, packed.data(), packed.size());
    return true;
  }

  void insert(std::string_view word, size_t hash, const int32_t* ids, size_t count) {
    std::string packed(reinterpret_cast<const char*>(ids), count * sizeof(int32_t));
    Shard& shard = shards_[hash % kShards];
    std::lock_guard<std::mutex> lock(shard.mu);
    if (shard.map.size() >= kEntriesPerShard) shard.map.clear();
    shard.map.try_emplace(std::string(word), std::move(packed));
  }

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::string, StringHash, std::equal_to<>> map;  // guarded by mu
  };
  std::array<Shard, kShards> shards_;
};

}  // namespace detail

// -----------------------------------------------------------------------------------------------------
// Loading

namespace {

// OpenAI's bytes_to_unicode(): the printable code point that stands for each byte in byte-level strings.
std::array<uint32_t, 256> byte_to_unicode() {
  std::array<uint32_t, 256> map{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  uint32_t extra = 0;
  for (int b = 0; b < 256; ++b) map[b] = direct[b] ? static_cast<uint32_t>(b) : 256 + extra++;
  return map;
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else {  // only code points below U+0800 occur here
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The raw bytes of a byte-level string, or nullopt when it contains a code point that stands for no
// byte (added tokens such as "<|endoftext|>" are plain ASCII and map to themselves).
std::optional<std::string> byte_level_to_bytes(std::string_view s,
                                               const std::array<int16_t, 0x144>& decoder) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if ((b0 & 0xE0) == 0xC0 && i + 1 < s.size() && (static_cast<uint8_t>(s[i + 1]) & 0xC0) == 0x80) {
      cp = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return std::nullopt;
    }
    if (cp >= decoder.size() || decoder[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(decoder[cp]));
  }
  return out;
}

// Splits "left right" (any run of spaces or tabs between, none inside) into its two parts.
bool split_merge(std::string_view line, std::string_view* left, std::string_view* right) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  size_t i = 0;
  while (i < line.size() && is_space(line[i])) ++i;
  size_t j = i;
  while (j < line.size() && !is_space(line[j])) ++j;
  size_t k = j;
  while (k < line.size() && is_space(line[k])) ++k;
  size_t l = k;
  while (l < line.size() && !is_space(line[l])) ++l;
  size_t m = l;
  while (m < line.size() && is_space(line[m])) ++m;
  if (j == i || l == k || m != line.size()) return false;
  *left = line.substr(i, j - i);
  *right = line.substr(k, l - k);
  return true;
}

std::string printable(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out(s.substr(0, kMax));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

BpeTokenizer::BpeTokenizer() : cache_(std::make_unique<detail::WordCache>()) {}
BpeTokenizer::~BpeTokenizer() = default;

std::unique_ptr<BpeTokenizer> BpeTokenizer::build(std::vector<std::string> tokens,
                                                  const std::vector<std::string>& merges,
                                                  const Sources& where) {
  const std::string& vocab_name = where.vocab;
  auto merge_error = [&](size_t index, const std::string& line, const std::string& problem) {
    return corrupt_data(where.merges + " " + where.merge_unit + " " +
                        std::to_string(where.first_merge_number + index) + " ('" + printable(line) +
                        "'): " + problem);
  };

  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  if (tokens.empty()) throw corrupt_data(vocab_name + ": the vocabulary is empty");
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) throw corrupt_data(vocab_name + ": too many tokens");

  const std::array<uint32_t, 256> encoder = byte_to_unicode();
  std::array<int16_t, 0x144> decoder;
  decoder.fill(-1);
  for (int b = 0; b < 256; ++b) decoder[encoder[b]] = static_cast<int16_t>(b);

  t->ids_.reserve(tokens.size());
  t->token_bytes_.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& tok = tokens[id];
    if (tok.empty()) throw corrupt_data(vocab_name + ": token " + std::to_string(id) + " is empty");
    if (!t->ids_.emplace(tok, static_cast<int32_t>(id)).second) {
      throw corrupt_data(vocab_name + ": token '" + printable(tok) + "' appears twice (ids " +
                         std::to_string(t->ids_.at(tok)) + " and " + std::to_string(id) + ")");
    }
    // Tokens that are not byte-level strings (added tokens) decode to their own text.
    t->token_bytes_.push_back(byte_level_to_bytes(tok, decoder).value_or(tok));
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(encoder[b], &s);
    auto it = t->ids_.find(s);
    if (it == t->ids_.end()) {
      throw corrupt_data(vocab_name + ": no token for byte " + std::to_string(b) + " ('" + s + "')");
    }
    t->byte_ids_[b] = it->second;
  }
  if (auto it = t->ids_.find(std::string(kEndOfText)); it != t->ids_.end()) t->eos_id_ = it->second;

  t->merges_ = detail::MergeTable(merges.size());
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& line = merges[i];
    std::string_view left, right;
    if (!split_merge(line, &left, &right))
      throw merge_error(i, line, "expected two tokens separated by a space");
    auto l = t->ids_.find(left);
    auto r = t->ids_.find(right);
    if (l == t->ids_.end() || r == t->ids_.end()) {
      throw merge_error(i, line,
                        "'" + printable(l == t->ids_.end() ? left : right) + "' is not in " + vocab_name);
    }
    joined.assign(left);
    joined.append(right);
    auto m = t->ids_.find(joined);
    if (m == t->ids_.end()) throw merge_error(i, line, "the merged token is not in " + vocab_name);
    t->merges_.insert(l->second, r->second, static_cast<int32_t>(i), m->second);
  }
  t->tokens_ = std::move(tokens);
  return t;
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool is_dir = fs::is_directory(dir, ec);
  std::string vocab_path, merges_path;
  if (is_dir && fs::is_regular_file(fs::path(dir) / "vocab.json", ec) &&
      fs::is_regular_file(fs::path(dir) / "merges.txt", ec)) {
    vocab_path = (fs::path(dir) / "vocab.json").string();
    merges_path = (fs::path(dir) / "merges.txt").string();
  } else if (is_dir && fs::is_regular_file(fs::path(dir) / "encoder.json", ec) &&
             fs::is_regular_file(fs::path(dir) / "vocab.bpe", ec)) {
    vocab_path = (fs::path(dir) / "encoder.json").string();
    merges_path = (fs::path(dir) / "vocab.bpe").string();
  } else {
    throw not_found("no GPT-2 vocabulary in " + dir + (is_dir ? "" : " (no such folder)") +
                    ": looked for vocab.json + merges.txt and for encoder.json + vocab.bpe");
  }

  // Vocabulary: a JSON object from byte-level string to id, ids 0..n-1.
  std::vector<std::string> tokens;
  {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(vocab_path));
    } catch (const nlohmann::json::exception& e) {
      throw corrupt_data(vocab_path + ": invalid JSON: " + e.what());
    }
    if (!j.is_object() || j.empty()) {
      throw corrupt_data(vocab_path + ": expected a JSON object mapping tokens to ids");
    }
    tokens.resize(j.size());
    std::vector<bool> seen(j.size(), false);
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer()) {
        throw corrupt_data(vocab_path + ": the id of token '" + printable(it.key()) + "' is not an integer");
      }
      const int64_t id = it.value().get<int64_t>();
      if (id < 0 || id >= static_cast<int64_t>(j.size()) || seen[id]) {
        throw corrupt_data(vocab_path + ": token '" + printable(it.key()) + "' has id " + std::to_string(id) +
                           "; ids must be 0.." + std::to_string(j.size() - 1) + ", each once");
      }
      seen[id] = true;
      tokens[id] = it.key();
    }
  }

  // Merges: "#version: ..." header, then one "left right" pair per line, best first.
  const std::string text = read_file(merges_path);
  std::vector<std::string> merges;
  size_t first_line = 1;
  {
    size_t pos = 0;
    size_t line_no = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line_no == 1 && line.starts_with("#version")) {
        first_line = 2;
        continue;
      }
      if (line.empty() && pos >= text.size()) break;  // the final newline
      merges.emplace_back(line);
    }
  }
  return build(std::move(tokens), merges, Sources{vocab_path, merges_path, "line", first_line});
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_tokens(std::vector<std::string> tokens,
                                                        const std::vector<std::string>& merges) {
  if (!merges.empty() && merges.front().starts_with("#version")) {
    const std::vector<std::string> rest(merges.begin() + 1, merges.end());
    return build(std::move(tokens), rest,
                 Sources{"the tokenizer vocabulary", "tokenizer merges", "entry", 1});
  }
  return build(std::move(tokens), merges,
               Sources{"the tokenizer vocabulary", "tokenizer merges", "entry", 0});
}

// -----------------------------------------------------------------------------------------------------
// Encoding and decoding

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>* out) const {
  const auto* bytes = reinterpret_cast<const uint8_t*>(word.data());
  const size_t n = word.size();
  if (n == 1) {
    out->push_back(byte_ids_[bytes[0]]);
    return;
  }
  const bool cacheable = n <= detail::WordCache::kMaxWordBytes;
  size_t hash = 0;
  if (cacheable) {
    hash = std::hash<std::string_view>{}(word);
    if (cache_->lookup(word, hash, out)) return;
  }
  constexpr size_t kSimpleMax = 48;
  if (n <= kSimpleMax) {
    int32_t symbols[kSimpleMax];
    for (size_t i = 0; i < n; ++i) symbols[i] = byte_ids_[bytes[i]];
    const size_t count = detail::bpe_merge_simple(merges_, symbols, n);
    out->insert(out->end(), symbols, symbols + count);
    if (cacheable) cache_->insert(word, hash, symbols, count);
    return;
  }
  std::vector<int32_t> symbols(n);
  for (size_t i = 0; i < n; ++i) symbols[i] = byte_ids_[bytes[i]];
  const size_t count = detail::bpe_merge_heap(merges_, symbols.data(), n);
  out->insert(out->end(), symbols.begin(), symbols.begin() + static_cast<std::ptrdiff_t>(count));
  if (cacheable) cache_->insert(word, hash, symbols.data(), count);
}

void BpeTokenizer::encode(std::string_view text, std::vector<int32_t>* out) const {
  Pretokenizer words(text);
  std::string_view word;
  while (words.next(&word)) encode_word(word, out);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  encode(text, &out);
  return out;
}

std::vector<int32_t> BpeTokenizer::encode_with_special(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (eos_id_ < 0) {
    encode(text, &out);
    return out;
  }
  size_t pos = 0;
  for (;;) {
    const size_t hit = text.find(kEndOfText, pos);
    if (hit == std::string_view::npos) break;
    encode(text.substr(pos, hit - pos), &out);
    out.push_back(eos_id_);
    pos = hit + kEndOfText.size();
  }
  encode(text.substr(pos), &out);
  return out;
}

void BpeTokenizer::check_id(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
    throw invalid_argument("token id " + std::to_string(id) + " is out of range (the vocabulary has ids 0.." +
                           std::to_string(tokens_.size() - 1) + ")");
  }
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  size_t total = 0;
  for (int32_t id : ids) {
    check_id(id);
    total += token_bytes_[static_cast<size_t>(id)].size();
  }
  std::string out;
  out.reserve(total);
  for (int32_t id : ids) out += token_bytes_[static_cast<size_t>(id)];
  return out;
}

const std::string& BpeTokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return token_bytes_[static_cast<size_t>(id)];
}

const std::string& BpeTokenizer::token_string(int32_t id) const {
  check_id(id);
  return tokens_[static_cast<size_t>(id)];
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view byte_level_string) const {
  auto it = ids_.find(byte_level_string);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace cortex::tokenizer
