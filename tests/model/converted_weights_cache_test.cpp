// Weights converted on load kept in a converted-weights file: the first load writes it, later loads map
// it and compute the same logits to the bit; a changed model, a damaged or foreign file and a folder that
// cannot be written all fall back to converting, never to wrong weights; loads racing each other write
// one file; `cortex cache`'s account of each file (current, model changed or gone, another format,
// damaged, left by a stopped conversion) and its removal under the lock.
#include "model/converted_weights_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "model/gpt2_model.h"
#include "support/test_models.h"
#include "util/cache_files.h"
#include "util/error.h"
#include "util/file_lock.h"
#include "util/file_util.h"

namespace cortex::model {
namespace {

namespace fs = std::filesystem;
using testing::make_temp_dir;
using testing::test_model;

const std::vector<int32_t> kTokens = {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 383, 50256};

// A copy of the shared tiny model (F32 safetensors), which the tests may change.
std::string tiny_copy(const std::string& dir) {
  const std::string model = dir + "/tiny";
  fs::copy(test_model("tiny"), model, fs::copy_options::recursive);
  return model;
}

std::vector<float> logits_of(std::unique_ptr<Gpt2Weights> weights) {
  auto m = Gpt2Model::create(std::move(weights), ModelOptions{});
  auto seq = m->new_sequence();
  BatchEntry e{seq.get(), kTokens, true};
  std::vector<float> logits;
  m->forward(std::span(&e, 1), &logits);
  return logits;
}

// The files in `dir` with the given extension.
std::vector<std::string> files_in(const std::string& dir, const std::string& extension) {
  std::vector<std::string> found;
  if (!fs::exists(dir)) return found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == extension) found.push_back(e.path().string());
  return found;
}

TEST(ConvertedWeightsCacheTest, PiecesComeBackAlignedAndWhole) {
  const std::string dir = make_temp_dir("cw");
  const std::string source = dir + "/source.bin";
  write_file_atomic(source, "model bytes");
  ConvertedWeightsCache cache(dir + "/cache", source, {source}, "q8_0.v1");
  EXPECT_FALSE(cache.open().has_value());  // nothing written yet
  cache.lock();
  std::vector<uint8_t> a(1000), b(3), c(70000);
  for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<uint8_t>(i * 7);
  std::memset(a.data(), 0xab, a.size());
  std::memset(b.data(), 0x5c, b.size());
  cache.write({{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}});
  auto contents = cache.open();
  ASSERT_TRUE(contents.has_value());
  ASSERT_EQ(contents->pieces.size(), 3u);
  const std::vector<std::vector<uint8_t>*> pieces = {&a, &b, &c};
  for (size_t i = 0; i < 3; ++i) {
    const auto [offset, bytes] = contents->pieces[i];
    EXPECT_EQ(offset % 64, 0u) << "piece " << i;
    ASSERT_EQ(bytes, pieces[i]->size());
    EXPECT_EQ(std::memcmp(contents->file->data() + offset, pieces[i]->data(), bytes), 0) << "piece " << i;
  }
  EXPECT_TRUE(files_in(dir + "/cache", ".tmp").empty());

  // Another kind of conversion, or another model at another path, is another entry.
  EXPECT_NE(ConvertedWeightsCache(dir + "/cache", source, {source}, "f16.v1").path(), cache.path());
  const std::string other = dir + "/other.bin";
  write_file_atomic(other, "model bytes");
  EXPECT_NE(ConvertedWeightsCache(dir + "/cache", other, {other}, "q8_0.v1").path(), cache.path());
  // The model's file changed since: the file is not its conversion.
  write_file_atomic(source, "other bytes, longer");
  EXPECT_FALSE(ConvertedWeightsCache(dir + "/cache", source, {source}, "q8_0.v1").open().has_value());
  // A source that cannot be read is named.
  try {
    ConvertedWeightsCache(dir + "/cache", dir + "/missing", {dir + "/missing"}, "q8_0.v1");
    FAIL() << "no error for a missing source";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST(ConvertedWeightsCacheTest, TheSecondLoadMapsWhatTheFirstConvertedAndComputesTheSameLogits) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  for (DType t : {DType::kQ8_0, DType::kF16}) {
    SCOPED_TRACE(dtype_name(t));
    const std::vector<float> reference = logits_of(Gpt2Weights::load(model, t));
    EXPECT_EQ(Gpt2Weights::load(model, t)->converted().where(), "in memory");

    auto first = Gpt2Weights::load(model, t, cache);
    EXPECT_TRUE(first->converted().written);
    ASSERT_FALSE(first->converted().cache_file.empty());
    EXPECT_GT(first->converted().bytes, 0u);
    auto second = Gpt2Weights::load(model, t, cache);
    EXPECT_FALSE(second->converted().written);
    EXPECT_EQ(second->converted().cache_file, first->converted().cache_file);
    EXPECT_EQ(second->converted().bytes, first->converted().bytes);
    EXPECT_GE(fs::file_size(second->converted().cache_file), first->converted().bytes);
    EXPECT_EQ(first->converted().where(), "written to " + first->converted().cache_file);
    EXPECT_EQ(second->converted().where(), "mapped from " + first->converted().cache_file);
    EXPECT_EQ(logits_of(std::move(first)), reference);
    EXPECT_EQ(logits_of(std::move(second)), reference);
  }
  EXPECT_EQ(files_in(cache, ".weights").size(), 2u);  // one per type
}

TEST(ConvertedWeightsCacheTest, NothingConvertedWritesNothing) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  auto w = Gpt2Weights::load(model, DType::kF32, dir + "/converted");
  EXPECT_EQ(w->converted().bytes, 0u);
  EXPECT_EQ(w->converted().where(), "");
  EXPECT_FALSE(fs::exists(dir + "/converted"));
}

TEST(ConvertedWeightsCacheTest, AModelChangedSinceIsConvertedAgain) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  const std::string file = Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().cache_file;
  ASSERT_FALSE(file.empty());
  // Rewritten in place (same path, new modification time): converted again, into the same entry.
  const std::string weights = model + "/model.safetensors";
  const auto bytes = read_file(weights);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << bytes;
  auto again = Gpt2Weights::load(model, DType::kQ8_0, cache);
  EXPECT_TRUE(again->converted().written);
  EXPECT_EQ(again->converted().cache_file, file);
  EXPECT_EQ(files_in(cache, ".weights").size(), 1u);
  EXPECT_FALSE(Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().written);
}

TEST(ConvertedWeightsCacheTest, DamagedOrForeignFilesAreConvertedAgain) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  const std::vector<float> reference = logits_of(Gpt2Weights::load(model, DType::kQ8_0));
  const std::string file = Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().cache_file;
  ASSERT_FALSE(file.empty());
  const std::string good = read_file(file);

  // Each damage, then a load: it converts again (writing a good file) and computes the right logits.
  auto check = [&](const std::string& what, std::string damaged) {
    SCOPED_TRACE(what);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << damaged;
    auto w = Gpt2Weights::load(model, DType::kQ8_0, cache);
    EXPECT_TRUE(w->converted().written);
    EXPECT_EQ(logits_of(std::move(w)), reference);
    EXPECT_EQ(read_file(file), good);
  };
  check("truncated", good.substr(0, good.size() / 2));
  check("empty", "");
  std::string magic = good;
  magic[0] = 'X';
  check("another file's magic", magic);
  // The first piece's size, in the table after the 40-byte header and the identity text.
  uint64_t id_bytes = 0;
  std::memcpy(&id_bytes, good.data() + 16, 8);
  std::string size = good;
  const uint64_t wrong = 64;
  std::memcpy(size.data() + 40 + id_bytes + 8, &wrong, 8);
  check("a piece of the wrong size", size);
  std::string beyond = good;
  const uint64_t far = uint64_t{1} << 40;
  std::memcpy(beyond.data() + 40 + id_bytes, &far, 8);
  check("a piece beyond the end", beyond);
}

TEST(ConvertedWeightsCacheTest, AFolderThatCannotBeWrittenConvertsInMemory) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string not_a_folder = dir + "/file";
  write_file_atomic(not_a_folder, "a file where the cache folder would be");
  auto w = Gpt2Weights::load(model, DType::kQ8_0, not_a_folder + "/converted");
  EXPECT_GT(w->converted().bytes, 0u);
  EXPECT_TRUE(w->converted().cache_file.empty());
  EXPECT_EQ(logits_of(std::move(w)), logits_of(Gpt2Weights::load(model, DType::kQ8_0)));
}

TEST(ConvertedWeightsCacheTest, LoadsStartingAtOnceWriteOneFileAndShareIt) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  constexpr int kLoads = 4;
  std::vector<std::unique_ptr<Gpt2Weights>> loaded(kLoads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kLoads; ++i)
    threads.emplace_back([&, i] { loaded[i] = Gpt2Weights::load(model, DType::kF16, cache); });
  for (auto& t : threads) t.join();
  int written = 0;
  for (const auto& w : loaded) {
    written += w->converted().written ? 1 : 0;
    EXPECT_EQ(w->converted().cache_file, loaded[0]->converted().cache_file);
  }
  EXPECT_EQ(written, 1);
  EXPECT_FALSE(loaded[0]->converted().cache_file.empty());
  EXPECT_EQ(files_in(cache, ".weights").size(), 1u);
}

using State = ConvertedWeightsInfo::State;

// The state of each entry in `cache`, by file name.
std::map<std::string, State> states_in(const std::string& cache) {
  std::map<std::string, State> states;
  for (const auto& e : list_converted_weights(cache, Gpt2Weights::writes_conversion_kind))
    states[fs::path(e.path).filename().string()] = e.state;
  return states;
}

TEST(ConvertedWeightsCacheTest, TheListingSaysWhichFilesALoadWouldStillUse) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  EXPECT_TRUE(list_converted_weights(cache, Gpt2Weights::writes_conversion_kind).empty());  // no folder yet
  const std::string q8 = Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().cache_file;
  const std::string f16 = Gpt2Weights::load(model, DType::kF16, cache)->converted().cache_file;
  const std::string q8_name = fs::path(q8).filename().string(), f16_name = fs::path(f16).filename().string();

  auto listed = list_converted_weights(cache, Gpt2Weights::writes_conversion_kind);
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& e : listed) {
    SCOPED_TRACE(e.path);
    EXPECT_EQ(e.state, State::kCurrent);
    EXPECT_FALSE(e.busy);
    EXPECT_GE(e.bytes, fs::file_size(e.path));
    EXPECT_EQ(e.sources, (std::vector<std::string>{model + "/config.json", model + "/model.safetensors"}));
    EXPECT_TRUE(e.kind.starts_with(e.path == q8 ? "q8_0." : "f16.")) << e.kind;
    EXPECT_FALSE(e.in_use);
  }
  {  // a load maps its file, and the listing says so (as it would in any other process)
    const auto loaded = Gpt2Weights::load(model, DType::kQ8_0, cache);
    for (const auto& e : list_converted_weights(cache, Gpt2Weights::writes_conversion_kind))
      EXPECT_EQ(e.in_use, e.path == q8) << e.path;
  }
  for (const auto& e : list_converted_weights(cache, Gpt2Weights::writes_conversion_kind))
    EXPECT_FALSE(e.in_use) << e.path;
  // A build with other layouts would not use them.
  for (const auto& e : list_converted_weights(cache, [](const std::string&) { return false; }))
    EXPECT_EQ(e.state, State::kOtherFormat);

  // The model rewritten: both are stale; a load of one type writes that one again.
  const std::string weights = model + "/model.safetensors";
  const auto bytes = read_file(weights);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_EQ(states_in(cache), (std::map<std::string, State>{{q8_name, State::kModelChanged},
                                                            {f16_name, State::kModelChanged}}));
  Gpt2Weights::load(model, DType::kQ8_0, cache);
  EXPECT_EQ(states_in(cache),
            (std::map<std::string, State>{{q8_name, State::kCurrent}, {f16_name, State::kModelChanged}}));

  // Damaged; a conversion that stopped (a partial file and a lock, no file); the model gone.
  const std::string good = read_file(f16);
  std::ofstream(f16, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() / 2);
  write_file_atomic(cache + "/stopped-f16.v1-0123456789abcdef.weights.tmp", "partial");
  EXPECT_EQ(states_in(cache),
            (std::map<std::string, State>{{q8_name, State::kCurrent},
                                          {f16_name, State::kDamaged},
                                          {"stopped-f16.v1-0123456789abcdef.weights", State::kNoFile}}));
  fs::remove_all(model);
  EXPECT_EQ(states_in(cache)[q8_name], State::kModelGone);
}

TEST(ConvertedWeightsCacheTest, ALoadThatMapsTheFileMarksItUsed) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  const std::string file = Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().cache_file;
  const struct timespec long_ago[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};  // 2001
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), long_ago, 0), 0);
  const auto before = list_converted_weights(cache, Gpt2Weights::writes_conversion_kind).at(0).last_used;
  ASSERT_TRUE(before.has_value());
  EXPECT_LT(*before, std::chrono::system_clock::now() - std::chrono::hours(24 * 365));
  EXPECT_FALSE(Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().written);  // mapped
  const auto after = list_converted_weights(cache, Gpt2Weights::writes_conversion_kind).at(0).last_used;
  ASSERT_TRUE(after.has_value());
  EXPECT_GT(*after, std::chrono::system_clock::now() - std::chrono::minutes(1));
}

TEST(ConvertedWeightsCacheTest, RemovalWaitsForNoOneAndLeavesAFileBeingWrittenAlone) {
  const std::string dir = make_temp_dir("cw");
  const std::string model = tiny_copy(dir);
  const std::string cache = dir + "/converted";
  auto mapped = Gpt2Weights::load(model, DType::kQ8_0, cache);
  const std::string file = mapped->converted().cache_file;
  const std::string lock = file.substr(0, file.size() - std::strlen(".weights")) + ".lock";
  {
    FileLock writer(lock);  // a process converting the same weights
    ASSERT_EQ(list_converted_weights(cache, Gpt2Weights::writes_conversion_kind).size(), 1u);
    EXPECT_TRUE(list_converted_weights(cache, Gpt2Weights::writes_conversion_kind)[0].busy);
    EXPECT_EQ(remove_converted_weights(file), CacheRemoval::kBusy);
    EXPECT_TRUE(fs::exists(file));
  }
  // Changed since it was chosen (prune's check, asked under the lock): kept.
  bool asked = false;
  EXPECT_EQ(remove_converted_weights(file, [&] { return !(asked = true); }), CacheRemoval::kChanged);
  EXPECT_TRUE(asked);
  EXPECT_TRUE(fs::exists(file));
  EXPECT_EQ(remove_converted_weights(file, [] { return true; }), CacheRemoval::kRemoved);
  EXPECT_FALSE(fs::exists(file));
  EXPECT_FALSE(fs::exists(lock));
  EXPECT_TRUE(list_converted_weights(cache, Gpt2Weights::writes_conversion_kind).empty());
  // What was mapped before stays whole; the next load converts and writes again.
  EXPECT_EQ(logits_of(std::move(mapped)), logits_of(Gpt2Weights::load(model, DType::kQ8_0)));
  EXPECT_TRUE(Gpt2Weights::load(model, DType::kQ8_0, cache)->converted().written);
}

}  // namespace
}  // namespace cortex::model
