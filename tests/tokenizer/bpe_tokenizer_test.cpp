// BpeTokenizer against the reference: the npm package gpt-3-encoder (a port of OpenAI's encoder.py),
// run with node through tests/tokenizer/reference_encode.js. Every corpus file is compared whole and
// line by line (so that a mismatch points at one line), and so are a few thousand random strings.
//
// Where the reference is not the truth, and how the inputs avoid it:
//  * gpt-3-encoder looks merge ranks up with JavaScript object keys, so a pair (a, b) becomes the key
//    "a,b". On the GPT-2 vocabulary 11 merges have a key that another split also produces: e.g. the
//    merge ('"', ',"') has key `",,"`, which is also the key of the pair ('",', '"'), a pair that has no
//    merge. Our tokenizer does true rank-based BPE. An exhaustive search over strings of up to 5
//    characters from the characters involved (" , } ] ) [ ' .), with and without a leading space, and 300k
//    random strings of up to 10 characters found no input on which the two differ: whenever such a pair
//    could form, a real merge of lower rank has already consumed one of its halves. The corpus holds
//    these strings (see "comma-quirk strings" in whitespace_and_edges.txt), and CommaKeyedMergesAgree
//    checks them directly.
//  * node decodes invalid UTF-8 to U+FFFD before encoding; we encode the bytes themselves. Invalid
//    UTF-8 is therefore only checked for round trips, never against the reference.
//  * node 20 carries Unicode 17, Debian 12's ICU 72 Unicode 15.0: letters and digits assigned after 15.0
//    may be classified differently. The corpus uses none.
#include "tokenizer/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/test_env.h"
#include "tokenizer/utf8_stream_decoder.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::tokenizer {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

const BpeTokenizer& gpt2() {
  static const std::unique_ptr<BpeTokenizer> t = BpeTokenizer::load(testing::vocab_dir());
  return *t;
}

struct CorpusFile {
  std::string name;
  std::string text;
};

const std::vector<CorpusFile>& corpus() {
  static const std::vector<CorpusFile> files = [] {
    std::vector<CorpusFile> out;
    const fs::path dir = fs::path(testing::source_dir()) / "tests/tokenizer/corpus";
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file()) out.push_back({entry.path().filename().string(), read_file(entry.path())});
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
  }();
  return files;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    lines.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return lines;
}

// The reference's ids for each text (an id the reference could not produce reads -1). Fails the test,
// with the reason, when node or the package cannot run.
std::vector<Ids> reference_encode(const std::vector<std::string>& texts) {
  const std::string script = testing::source_dir() + "/tests/tokenizer/reference_encode.js";
  testing::CommandResult r;
  try {
    r = testing::run_command({"node", script, "--package", testing::vocab_dir(), "--json"},
                             nlohmann::json(texts).dump());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot run node (" << e.what()
                  << "): the reference tokenizer test needs node and the npm package gpt-3-encoder "
                     "(scripts/setup.sh installs both)";
    return {};
  }
  if (r.exit_code != 0) {
    ADD_FAILURE() << "node " << script << " exited with " << r.exit_code << ": " << r.err;
    return {};
  }
  std::vector<Ids> out;
  try {
    for (const auto& ids : nlohmann::json::parse(r.out)) {
      Ids v;
      for (const auto& id : ids) v.push_back(id.is_number_integer() ? id.get<int32_t>() : -1);
      out.push_back(std::move(v));
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "unreadable output from the reference: " << e.what();
    return {};
  }
  if (out.size() != texts.size()) {
    ADD_FAILURE() << "the reference returned " << out.size() << " results for " << texts.size() << " texts";
    return {};
  }
  return out;
}

// `s` as a JSON string literal; invalid or cut UTF-8 shows as U+FFFD.
std::string json_quote(std::string_view s) {
  Utf8StreamDecoder d;
  std::string text = d.push(s);
  text += d.finish();
  return nlohmann::json(text).dump();
}

std::string show_tokens(const Ids& ids, size_t from, size_t to) {
  std::ostringstream s;
  s << "[";
  for (size_t i = from; i < std::min(to, ids.size()); ++i) {
    if (i > from) s << ", ";
    s << ids[i];
    if (ids[i] >= 0 && static_cast<size_t>(ids[i]) < gpt2().vocab_size()) {
      s << " " << nlohmann::json(gpt2().token_string(ids[i])).dump();
    }
  }
  s << "]";
  return s.str();
}

// "" when equal, else where and how `ours` first differs from `ref`, with context.
std::string compare(const Ids& ours, const Ids& ref) {
  if (ours == ref) return "";
  size_t i = 0;
  while (i < ours.size() && i < ref.size() && ours[i] == ref[i]) ++i;
  const size_t from = i >= 3 ? i - 3 : 0;
  const std::string before = gpt2().decode(std::span<const int32_t>(ours.data(), i));
  std::ostringstream s;
  s << "first difference at token " << i << " (ours " << ours.size() << " tokens, reference " << ref.size()
    << "), after text " << json_quote(before.substr(before.size() - std::min<size_t>(before.size(), 40)))
    << "\n    ours:      " << show_tokens(ours, from, i + 6)
    << "\n    reference: " << show_tokens(ref, from, i + 6);
  return s.str();
}

// Compares encode() with the reference on each text; reports up to 10 mismatches.
void expect_matches_reference(const std::vector<std::string>& texts, const std::vector<std::string>& labels) {
  const std::vector<Ids> ref = reference_encode(texts);
  ASSERT_EQ(ref.size(), texts.size());
  size_t mismatches = 0;
  for (size_t k = 0; k < texts.size(); ++k) {
    const std::string diff = compare(gpt2().encode(texts[k]), ref[k]);
    if (diff.empty()) continue;
    if (++mismatches <= 10) {
      ADD_FAILURE() << labels[k] << ": " << json_quote(texts[k].substr(0, 200)) << "\n  " << diff;
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << texts.size() << " texts";
}

TEST(BpeTokenizerTest, KnownIds) {
  EXPECT_EQ(gpt2().encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(gpt2().encode(" the"), (Ids{262}));
  EXPECT_EQ(gpt2().encode("I'm here"), (Ids{40, 1101, 994}));
  EXPECT_EQ(gpt2().encode("  hi"), (Ids{220, 23105}));
  EXPECT_EQ(gpt2().encode("日本"), (Ids{33768, 98, 17312, 105}));
  EXPECT_EQ(gpt2().encode(""), Ids{});
}

TEST(BpeTokenizerTest, CorpusIsValidUtf8AndLargeEnough) {
  size_t bytes = 0;
  for (const auto& f : corpus()) {
    EXPECT_TRUE(is_valid_utf8(f.text)) << f.name;
    bytes += f.text.size();
  }
  EXPECT_GE(bytes, 20000u);
}

// The key requirement: byte-exact with the reference on the whole corpus, file by file and line by line.
TEST(BpeTokenizerTest, MatchesReferenceOnCorpus) {
  std::vector<std::string> texts, labels;
  for (const auto& f : corpus()) {
    texts.push_back(f.text);
    labels.push_back(f.name + " (whole file)");
    const auto lines = lines_of(f.text);
    for (size_t i = 0; i < lines.size(); ++i) {
      texts.push_back(lines[i]);
      labels.push_back(f.name + ":" + std::to_string(i + 1));
      if (lines[i].size() > 1 && lines[i].back() == '\n') {
        texts.push_back(lines[i].substr(0, lines[i].size() - 1));
        labels.push_back(f.name + ":" + std::to_string(i + 1) + " (without its newline)");
      }
    }
  }
  expect_matches_reference(texts, labels);
}

TEST(BpeTokenizerTest, MatchesReferenceOnRandomStrings) {
  std::mt19937 rng(20240310);
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          "the",
                                          " the",
                                          " The",
                                          "ing",
                                          "I",
                                          "'s",
                                          "'t",
                                          "'re",
                                          "'ve",
                                          "'m",
                                          "'ll",
                                          "'d",
                                          "'S",
                                          "'",
                                          " ",
                                          "  ",
                                          "   ",
                                          "\n",
                                          "\n\n",
                                          "\t",
                                          "\r\n",
                                          "7",
                                          "42",
                                          " 3",
                                          "2024",
                                          ".",
                                          ",",
                                          "!",
                                          "?",
                                          "--",
                                          "...",
                                          "\"",
                                          "\",",
                                          "\"]",
                                          "},",
                                          "=",
                                          "==",
                                          "(",
                                          ")",
                                          "{",
                                          "}",
                                          "<|endoftext|>",
                                          "é",
                                          "\xC3\xA9",
                                          "e\xCC\x81",
                                          "\xC2\xA0",
                                          "\xE3\x80\x80",
                                          "\xE2\x80\xAF",
                                          "\xE2\x80\xA8",
                                          "\xEF\xBB\xBF",
                                          "\xE2\x80\x89",
                                          "日本",
                                          "語",
                                          "한국",
                                          "مرحبا",
                                          "नमस्ते",
                                          "Привет",
                                          "😀",
                                          "👍🏽",
                                          "\xE2\x80\x8D",
                                          "🇫🇷",
                                          "Ⅻ",
                                          "½",
                                          "٣",
                                          "https://x.y/z?q=1",
                                          "don't",
                                          "CAN'T",
                                          "0x1F",
                                          "snake_case",
                                          "camelCase"};
  std::vector<std::string> texts, labels;
  for (int k = 0; k < 3000; ++k) {
    std::string t;
    const int n = 1 + static_cast<int>(rng() % 16);
    for (int i = 0; i < n; ++i) t += atoms[rng() % atoms.size()];
    texts.push_back(t);
    labels.push_back("random string " + std::to_string(k));
  }
  expect_matches_reference(texts, labels);
}

// See the comment at the top of this file.
TEST(BpeTokenizerTest, CommaKeyedMergesAgree) {
  const std::vector<std::string> texts = {"\",\"",
                                          "\",\"\"",
                                          "\",\"\",\"",
                                          "}\",\"",
                                          "],\"",
                                          "),\"",
                                          "\"],\"",
                                          "'],\"",
                                          "'],['",
                                          "],[",
                                          "\",\"]",
                                          ".\",\"",
                                          "',\"",
                                          "','",
                                          "',''",
                                          ",\"",
                                          ",,\"",
                                          ".,\"",
                                          ".,\".",
                                          " ,\"",
                                          " \",\"",
                                          "\"a\",\"b\"",
                                          "[\"a\",\"b\"],[\"c\"]",
                                          "{\"k\":\"v\",\"w\":\"x\"}",
                                          "f(a),\"b\"",
                                          "x],[y",
                                          "'a','b'"};
  expect_matches_reference(texts, texts);
}

TEST(BpeTokenizerTest, DecodeRoundTripsCorpus) {
  for (const auto& f : corpus()) {
    EXPECT_EQ(gpt2().decode(gpt2().encode(f.text)), f.text) << f.name;
    EXPECT_EQ(gpt2().decode(gpt2().encode_with_special(f.text)), f.text) << f.name;
  }
}

TEST(BpeTokenizerTest, DecodeRoundTripsArbitraryBytes) {
  std::mt19937 rng(7);
  for (int k = 0; k < 2000; ++k) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 4 == 0 ? 0x80 + rng() % 0x80 : rng() % 256);
    const Ids ids = gpt2().encode(bytes);
    ASSERT_EQ(gpt2().decode(ids), bytes);
  }
}

TEST(BpeTokenizerTest, SpecialTokens) {
  const BpeTokenizer& t = gpt2();
  EXPECT_EQ(t.eos_id(), 50256);
  EXPECT_EQ(t.decode(Ids{50256}), "<|endoftext|>");
  // Plain encode() treats the literal as text, like the reference.
  EXPECT_EQ(t.encode("<|endoftext|>"), (Ids{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(t.encode_with_special("<|endoftext|>"), Ids{50256});
  Ids expected = t.encode("Hello");
  expected.push_back(50256);
  const Ids world = t.encode(" world");
  expected.insert(expected.end(), world.begin(), world.end());
  expected.push_back(50256);
  expected.push_back(50256);
  EXPECT_EQ(t.encode_with_special("Hello<|endoftext|> world<|endoftext|><|endoftext|>"), expected);
  // Text before the marker is encoded on its own: its trailing space is not glued to a next word.
  Ids a = t.encode("end ");
  a.push_back(50256);
  EXPECT_EQ(t.encode_with_special("end <|endoftext|>"), a);
  EXPECT_EQ(t.encode_with_special("no marker here"), t.encode("no marker here"));
  EXPECT_EQ(t.encode_with_special("<|endoftext|"), t.encode("<|endoftext|"));
}

TEST(BpeTokenizerTest, Accessors) {
  const BpeTokenizer& t = gpt2();
  EXPECT_EQ(t.vocab_size(), 50257u);
  EXPECT_EQ(t.token_id("\xC4\xA0the"), 262);  // "Ġthe"
  EXPECT_EQ(t.token_id("!"), 0);
  EXPECT_EQ(t.token_id("<|endoftext|>"), 50256);
  EXPECT_FALSE(t.token_id("no such token").has_value());
  EXPECT_EQ(t.token_bytes(262), " the");
  EXPECT_EQ(t.token_string(262), "\xC4\xA0the");
  EXPECT_EQ(t.token_bytes(198), "\n");
  // Tokens may hold part of a character: 日 is E6 97 A5, encoded as [E6 97] [A5].
  EXPECT_EQ(t.encode("日"), (Ids{33768, 98}));
  EXPECT_EQ(t.token_bytes(33768), "\xE6\x97");
  EXPECT_EQ(t.token_bytes(98), "\xA5");
}

TEST(BpeTokenizerTest, OutOfRangeIdsAreInvalidArguments) {
  const BpeTokenizer& t = gpt2();
  try {
    t.decode(Ids{15496, 50257, 995});
    FAIL() << "decode accepted id 50257";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("50257"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.decode(Ids{-1}), Error);
  EXPECT_THROW(t.token_bytes(-5), Error);
  EXPECT_THROW(t.token_bytes(1 << 30), Error);
  EXPECT_EQ(t.decode(Ids{}), "");
}

// Results do not depend on what the cache holds: a fresh tokenizer, a warm one, and one whose cache
// shards have been cleared many times over all agree.
TEST(BpeTokenizerTest, CacheDoesNotChangeResults) {
  const auto fresh = BpeTokenizer::load(testing::vocab_dir());
  std::vector<Ids> first;
  for (const auto& f : corpus()) first.push_back(fresh->encode(f.text));
  for (size_t i = 0; i < corpus().size(); ++i) EXPECT_EQ(fresh->encode(corpus()[i].text), first[i]);

  // More distinct words than the cache holds (16 shards x 4096), encoded twice in different orders.
  std::vector<std::string> words;
  std::mt19937 rng(3);
  for (int i = 0; i < 90000; ++i) {
    std::string w = " ";
    const int n = 2 + static_cast<int>(rng() % 9);
    for (int k = 0; k < n; ++k) w.push_back(static_cast<char>('a' + rng() % 26));
    words.push_back(w);
  }
  std::vector<Ids> once;
  for (const auto& w : words) once.push_back(fresh->encode(w));
  for (size_t i = words.size(); i-- > 0;) ASSERT_EQ(fresh->encode(words[i]), once[i]) << words[i];
  for (size_t i = 0; i < corpus().size(); ++i) EXPECT_EQ(fresh->encode(corpus()[i].text), first[i]);
  const auto other = BpeTokenizer::load(testing::vocab_dir());
  for (size_t i = 0; i < words.size(); i += 97) ASSERT_EQ(other->encode(words[i]), once[i]) << words[i];
}

TEST(BpeTokenizerTest, ConcurrentEncodeFromSeveralThreads) {
  const auto t = BpeTokenizer::load(testing::vocab_dir());
  std::vector<std::string> texts;
  for (const auto& f : corpus()) {
    for (const auto& line : lines_of(f.text)) texts.push_back(line);
  }
  std::vector<Ids> expected;
  for (const auto& s : texts) expected.push_back(gpt2().encode(s));
  std::atomic<int> failures{0};
  auto work = [&](int seed) {
    std::mt19937 rng(seed);
    for (int round = 0; round < 4; ++round) {
      for (size_t k = 0; k < texts.size(); ++k) {
        const size_t i = rng() % texts.size();
        if (t->encode(texts[i]) != expected[i]) ++failures;
      }
    }
  };
  std::thread a(work, 1), b(work, 2), c(work, 3);
  a.join();
  b.join();
  c.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(BpeTokenizerTest, MissingVocabularyIsNotFound) {
  for (const std::string& dir :
       {testing::binary_dir() + "/no/such/folder", testing::make_temp_dir("empty-vocab")}) {
    try {
      BpeTokenizer::load(dir);
      FAIL() << "loaded a vocabulary from " << dir;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(e.code(), ErrorCode::kNotFound);
      EXPECT_NE(m.find(dir), std::string::npos) << m;
      for (const char* file : {"vocab.json", "merges.txt", "encoder.json", "vocab.bpe"}) {
        EXPECT_NE(m.find(file), std::string::npos) << m;
      }
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
}

// Loads a vocabulary folder holding `vocab` and `merges` under the OpenAI names; returns the error.
std::optional<Error> load_error(const std::string& vocab, const std::string& merges, std::string* dir_out) {
  const std::string dir = testing::make_temp_dir("bad-vocab");
  write_file_atomic(dir + "/encoder.json", vocab);
  write_file_atomic(dir + "/vocab.bpe", merges);
  *dir_out = dir;
  try {
    BpeTokenizer::load(dir);
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

TEST(BpeTokenizerTest, MalformedFilesAreCorruptData) {
  const std::string good_vocab = read_file(testing::vocab_dir() + "/encoder.json");
  const std::string good_merges = read_file(testing::vocab_dir() + "/vocab.bpe");
  std::string dir;

  auto e = load_error("{\"a\": 0, not json", good_merges, &dir);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), ErrorCode::kCorruptData);
  EXPECT_NE(std::string(e->what()).find(dir + "/encoder.json"), std::string::npos) << e->what();

  e = load_error("[1, 2, 3]", good_merges, &dir);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), ErrorCode::kCorruptData);
  EXPECT_NE(std::string(e->what()).find("encoder.json"), std::string::npos) << e->what();

  e = load_error(good_vocab, "#version: 0.2\n\xC4\xA0 t\nthree parts here\n", &dir);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), ErrorCode::kCorruptData);
  EXPECT_NE(std::string(e->what()).find(dir + "/vocab.bpe line 3"), std::string::npos) << e->what();

  e = load_error(good_vocab, "#version: 0.2\nnotatoken xyz\n", &dir);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), ErrorCode::kCorruptData);
  EXPECT_NE(std::string(e->what()).find("vocab.bpe line 2"), std::string::npos) << e->what();

  // Ids must be 0..n-1.
  e = load_error("{\"a\": 0, \"b\": 5}", "#version: 0.2\n", &dir);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), ErrorCode::kCorruptData);
}

// The same vocabulary under Hugging Face's names, and as a GGUF file carries it, gives the same ids.
TEST(BpeTokenizerTest, HuggingFaceNamesAndTokenListGiveSameIds) {
  const std::string dir = testing::make_temp_dir("hf-vocab");
  fs::copy_file(testing::vocab_dir() + "/encoder.json", dir + "/vocab.json");
  fs::copy_file(testing::vocab_dir() + "/vocab.bpe", dir + "/merges.txt");
  const auto hf = BpeTokenizer::load(dir);

  const auto vocab = nlohmann::json::parse(read_file(testing::vocab_dir() + "/encoder.json"));
  std::vector<std::string> tokens(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) tokens[it.value().get<size_t>()] = it.key();
  std::vector<std::string> merges = lines_of(read_file(testing::vocab_dir() + "/vocab.bpe"));
  for (auto& m : merges) {
    if (!m.empty() && m.back() == '\n') m.pop_back();
  }
  const auto from_list = BpeTokenizer::from_tokens(tokens, merges);  // with the "#version" header
  merges.erase(merges.begin());
  const auto from_list_no_header = BpeTokenizer::from_tokens(tokens, merges);

  for (const auto* t : {hf.get(), from_list.get(), from_list_no_header.get()}) {
    EXPECT_EQ(t->vocab_size(), 50257u);
    EXPECT_EQ(t->eos_id(), 50256);
    for (const auto& f : corpus()) EXPECT_EQ(t->encode(f.text), gpt2().encode(f.text)) << f.name;
  }

  // A merge whose parts are not tokens is named by its entry number.
  try {
    BpeTokenizer::from_tokens(tokens, {"\xC4\xA0 t", "bogus-left t"});
    FAIL() << "accepted a bad merge";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
    EXPECT_NE(std::string(e.what()).find("entry 1"), std::string::npos) << e.what();
  }
}

// The two merge algorithms agree (the heap one only runs on words longer than 48 bytes, which the
// corpus has few of), on GPT-2's merges and on random merge tables whose ranks are in no useful order.
TEST(BpeTokenizerTest, MergeAlgorithmsAgree) {
  const auto vocab = nlohmann::json::parse(read_file(testing::vocab_dir() + "/encoder.json"));
  std::map<std::string, int32_t> ids;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) ids[it.key()] = it.value().get<int32_t>();
  detail::MergeTable gpt2_merges(50000);
  {
    const auto lines = lines_of(read_file(testing::vocab_dir() + "/vocab.bpe"));
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string line = lines[i];
      if (!line.empty() && line.back() == '\n') line.pop_back();
      const size_t sp = line.find(' ');
      if (sp == std::string::npos) continue;
      const std::string l = line.substr(0, sp), r = line.substr(sp + 1);
      gpt2_merges.insert(ids.at(l), ids.at(r), static_cast<int32_t>(i - 1), ids.at(l + r));
    }
  }
  std::mt19937 rng(11);
  const std::vector<std::string> texts = {" the", "ing", "ation", "aaaa", "  ", "    ", "\xC4\xA0\xC4\xA0",
                                          "==",   "ab",  "er",    "on",   "12", "00"};
  const Ids single_bytes = gpt2().encode(" abcdefghijklmnopqrstuvwxyz0123456789=-_.,!?\n\t");
  for (int k = 0; k < 3000; ++k) {
    Ids word;
    const size_t n = 2 + rng() % 120;
    for (size_t i = 0; i < n; ++i) {
      if (rng() % 3 == 0) {
        word.push_back(single_bytes[rng() % single_bytes.size()]);
      } else {
        const Ids piece = gpt2().encode(texts[rng() % texts.size()]);
        word.insert(word.end(), piece.begin(), piece.end());
      }
    }
    Ids a = word, b = word;
    a.resize(detail::bpe_merge_simple(gpt2_merges, a.data(), a.size()));
    b.resize(detail::bpe_merge_heap(gpt2_merges, b.data(), b.size()));
    ASSERT_EQ(a, b) << "word " << k;
  }
  for (int table = 0; table < 200; ++table) {
    // Symbols 0..3 are "bytes"; each merge makes a new symbol; ranks are a random permutation.
    const int n_merges = 1 + static_cast<int>(rng() % 12);
    detail::MergeTable merges;
    std::vector<int32_t> ranks(static_cast<size_t>(n_merges));
    for (int i = 0; i < n_merges; ++i) ranks[static_cast<size_t>(i)] = i;
    std::shuffle(ranks.begin(), ranks.end(), rng);
    for (int i = 0; i < n_merges; ++i) {
      const auto l = static_cast<int32_t>(rng() % static_cast<unsigned>(4 + i));
      const auto r = static_cast<int32_t>(rng() % static_cast<unsigned>(4 + i));
      if (merges.find(l, r) == nullptr) merges.insert(l, r, ranks[static_cast<size_t>(i)], 4 + i);
    }
    for (int k = 0; k < 200; ++k) {
      Ids word(1 + rng() % 40);
      for (auto& s : word) s = static_cast<int32_t>(rng() % 4);
      Ids a = word, b = word;
      a.resize(detail::bpe_merge_simple(merges, a.data(), a.size()));
      b.resize(detail::bpe_merge_heap(merges, b.data(), b.size()));
      ASSERT_EQ(a, b) << "table " << table << " word " << k;
    }
  }
}

}  // namespace
}  // namespace cortex::tokenizer
