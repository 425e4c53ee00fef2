// Model downloads end to end: s3:// against s3rver behind a front that checks every signature with
// botocore, http(s):// and hf:// against a small local HTTP server; the cache, resumption after a server
// that went away, concurrent fetches, integrity checks, and the CLI's progress bar; the cache's listing
// and removal (`cortex cache`).
#include "storage/model_fetcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>

#include "storage/model_cache.h"
#include "support/background_process.h"
#include "support/s3_test_server.h"
#include "support/test_env.h"
#include "support/test_models.h"
#include "util/error.h"
#include "util/file_lock.h"
#include "util/file_util.h"
#include "util/mapped_file.h"

namespace cortex::storage {
namespace {

namespace fs = std::filesystem;
using testing::S3TestServer;
using testing::test_model;

const std::vector<std::string> kTinyFiles{"config.json", "model.safetensors", "vocab.json", "merges.txt"};

void expect_same_files(const std::string& fetched_dir, const std::string& source_dir) {
  for (const auto& name : kTinyFiles) {
    ASSERT_TRUE(file_exists(fetched_dir + "/" + name)) << name;
    EXPECT_TRUE(read_file(fetched_dir + "/" + name) == read_file(source_dir + "/" + name)) << name;
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void use_test_credentials(const std::string& endpoint) {
  ::setenv("AWS_ACCESS_KEY_ID", S3TestServer::kAccessKey, 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", S3TestServer::kSecretKey, 1);
  ::setenv("AWS_ENDPOINT_URL", endpoint.c_str(), 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
  ::setenv("AWS_CONFIG_FILE", "/dev/null", 1);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
  ::unsetenv("AWS_PROFILE");
}

class S3FetchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new S3TestServer();
    server_->upload(test_model("tiny"), "models", "tiny");
    server_->upload(test_model("tiny.gguf"), "models", "gguf/tiny.gguf");
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    use_test_credentials(server_->endpoint());
    options_.cache_dir = testing::make_temp_dir("cache");
  }
  static S3TestServer* server_;
  FetchOptions options_;
};
S3TestServer* S3FetchTest::server_ = nullptr;

TEST_F(S3FetchTest, FetchesAFolderWithProgressAndASecondFetchDownloadsNothing) {
  std::vector<FetchProgress> seen;
  options_.progress = [&](const FetchProgress& p) { seen.push_back(p); };
  FetchedModel m = fetch_model("s3://models/tiny", options_);
  expect_same_files(m.path, test_model("tiny"));
  EXPECT_EQ(m.downloaded_bytes, m.total_bytes);
  EXPECT_GT(m.total_bytes, 13'000'000u);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().stage, "done");
  EXPECT_EQ(seen.back().done, m.total_bytes);
  // Nothing that looks like a model file but is not one.
  for (const auto& e : fs::directory_iterator(m.path))
    EXPECT_EQ(e.path().filename().string().find(".part"), std::string::npos) << e.path();

  FetchedModel again = fetch_model("s3://models/tiny", options_);
  EXPECT_EQ(again.downloaded_bytes, 0u);
  EXPECT_EQ(again.path, m.path);

  // A file changed in the cache (or on the store) is fetched again; the others are not.
  write_file_atomic(m.path + "/config.json", "{}");
  std::error_code ec;
  fs::remove(m.path + "/merges.txt", ec);
  FetchedModel repaired = fetch_model("s3://models/tiny", options_);
  expect_same_files(repaired.path, test_model("tiny"));
  EXPECT_GT(repaired.downloaded_bytes, 0u);
  EXPECT_LT(repaired.downloaded_bytes, 1'000'000u);
}

TEST_F(S3FetchTest, FetchesASingleGgufObject) {
  FetchedModel m = fetch_model("s3://models/gguf/tiny.gguf", options_);
  EXPECT_EQ(fs::path(m.path).filename(), "tiny.gguf");
  EXPECT_TRUE(read_file(m.path) == read_file(test_model("tiny.gguf")));
  // The prefix holding it works too.
  EXPECT_EQ(fs::path(fetch_model("s3://models/gguf", options_).path).filename(), "tiny.gguf");
}

TEST_F(S3FetchTest, WrongSecretIsAccessDeniedAndMissingThingsAreNoSuchModel) {
  ::setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
  std::string denied = error_of([&] { fetch_model("s3://models/tiny", options_); });
  EXPECT_NE(denied.find("access denied"), std::string::npos) << denied;
  EXPECT_NE(denied.find("SignatureDoesNotMatch"), std::string::npos) << denied;
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN", 1);
  EXPECT_NE(error_of([&] { fetch_model("s3://models/tiny", options_); }).find("InvalidAccessKeyId"),
            std::string::npos);

  use_test_credentials(server_->endpoint());
  std::string missing = error_of([&] { fetch_model("s3://models/no-such-model", options_); });
  EXPECT_EQ(missing.rfind("no such model: s3://models/no-such-model", 0), 0u) << missing;
  EXPECT_NE(error_of([&] { fetch_model("s3://no-such-bucket/x", options_); }).find("no such bucket"),
            std::string::npos);
  EXPECT_NE(error_of([&] { fetch_model("s3://models/gguf/other.gguf", options_); }).find("no such model"),
            std::string::npos);
}

TEST_F(S3FetchTest, CredentialsComeFromAProfileInTheCredentialsFile) {
  const std::string dir = testing::make_temp_dir("aws-profile");
  write_file_atomic(dir + "/credentials", std::string("[models]\naws_access_key_id = ") +
                                              S3TestServer::kAccessKey +
                                              "\naws_secret_access_key = " + S3TestServer::kSecretKey + "\n");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir + "/credentials").c_str(), 1);
  ::setenv("AWS_PROFILE", "models", 1);
  expect_same_files(fetch_model("s3://models/tiny", options_).path, test_model("tiny"));
  ::unsetenv("AWS_PROFILE");
  // Without credentials the request goes unsigned, and this store refuses it.
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
  EXPECT_NE(error_of([&] { fetch_model("s3://models/tiny", options_); }).find("access denied"),
            std::string::npos);
}

// A server that goes away mid-transfer: a clear error, nothing in the cache that looks complete, and the
// next fetch resumes where the transfer stopped.
TEST_F(S3FetchTest, ServerStoppedMidDownloadLeavesNoCorruptEntryAndTheNextFetchResumes) {
  S3TestServer slow(4'000'000);  // 4 MB/s: the 13 MB weights take ~3 s
  slow.upload(test_model("tiny"), "models", "tiny");
  use_test_credentials(slow.endpoint());
  std::atomic<bool> stopped{false};
  options_.progress = [&](const FetchProgress& p) {
    if (p.file == "model.safetensors" && p.done > 6'000'000 && !stopped.exchange(true)) slow.stop_front();
  };
  std::string error = error_of([&] { fetch_model("s3://models/tiny", options_); });
  ASSERT_TRUE(stopped);
  EXPECT_NE(error.find("model.safetensors"), std::string::npos) << error;
  EXPECT_NE(error.find("broke off"), std::string::npos) << error;
  // No model.safetensors (only the .part), and the manifest does not claim completeness.
  bool complete_weights = false;
  for (const auto& e : fs::recursive_directory_iterator(options_.cache_dir))
    if (e.path().filename() == "model.safetensors") complete_weights = true;
  EXPECT_FALSE(complete_weights);
  const auto entries = list_cache_entries(options_.cache_dir);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].uri, "s3://models/tiny");
  EXPECT_FALSE(entries[0].complete);
  EXPECT_GT(entries[0].bytes, 4'000'000u);  // the partial file counts

  slow.start_front();
  options_.progress = nullptr;
  FetchedModel m = fetch_model("s3://models/tiny", options_);
  expect_same_files(m.path, test_model("tiny"));
  EXPECT_LT(m.downloaded_bytes, m.total_bytes - 4'000'000) << "the weights were fetched again from the start";
}

// Large files go over several ranged requests at once; a failure keeps the complete prefix, and the next
// fetch resumes from it.
TEST_F(S3FetchTest, ParallelRangesGiveTheSameFileAndResumeAfterAFailure) {
  S3TestServer slow(2'000'000);  // per connection: 4 connections fetch ~8 MB/s together
  slow.upload(test_model("tiny"), "models", "tiny");
  use_test_credentials(slow.endpoint());
  options_.connections = 4;
  options_.parallel_min_bytes = 1 << 20;
  std::atomic<bool> stopped{false};
  options_.progress = [&](const FetchProgress& p) {
    if (p.file == "model.safetensors" && p.done > 8'000'000 && !stopped.exchange(true)) slow.stop_front();
  };
  std::string error = error_of([&] { fetch_model("s3://models/tiny", options_); });
  ASSERT_TRUE(stopped);
  EXPECT_NE(error.find("broke off"), std::string::npos) << error;
  slow.start_front();
  options_.progress = nullptr;
  FetchedModel m = fetch_model("s3://models/tiny", options_);
  expect_same_files(m.path, test_model("tiny"));
  EXPECT_LT(m.downloaded_bytes, m.total_bytes) << "nothing of the first attempt was kept";

  // Without a failure, straight through.
  options_.cache_dir = testing::make_temp_dir("cache");
  use_test_credentials(server_->endpoint());
  expect_same_files(fetch_model("s3://models/tiny", options_).path, test_model("tiny"));
}

TEST_F(S3FetchTest, TwoFetchesAtOnceDownloadOnce) {
  S3TestServer slow(8'000'000);
  slow.upload(test_model("tiny"), "models", "tiny");
  use_test_credentials(slow.endpoint());
  FetchedModel a, b;
  std::thread other([&] { a = fetch_model("s3://models/tiny", options_); });
  b = fetch_model("s3://models/tiny", options_);
  other.join();
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.downloaded_bytes + b.downloaded_bytes, a.total_bytes);
  expect_same_files(a.path, test_model("tiny"));
}

// `cortex cache`'s account of downloads: the URI, completeness, size and last use of each entry; removal
// under the entry's lock, never while a fetch fills it; a fetch that waits while its entry is removed
// makes it again.
TEST_F(S3FetchTest, EntriesAreListedAndRemovedUnderTheirLock) {
  EXPECT_TRUE(list_cache_entries(options_.cache_dir).empty());
  const FetchedModel m = fetch_model("s3://models/tiny", options_);
  auto entries = list_cache_entries(options_.cache_dir);
  ASSERT_EQ(entries.size(), 1u);
  const std::string dir = entries[0].dir;
  EXPECT_EQ(entries[0].uri, "s3://models/tiny");
  EXPECT_TRUE(entries[0].complete);
  EXPECT_FALSE(entries[0].busy);
  EXPECT_FALSE(entries[0].in_use);
  EXPECT_GE(entries[0].bytes, m.total_bytes);
  EXPECT_EQ(m.path, dir + "/model");
  {
    auto loaded = MappedFile::open(m.path + "/model.safetensors");  // as a replica's load maps it
    EXPECT_TRUE(list_cache_entries(options_.cache_dir).at(0).in_use);
  }
  EXPECT_FALSE(list_cache_entries(options_.cache_dir).at(0).in_use);

  // Each fetch that serves the entry marks it used, though it downloads nothing.
  const struct timespec long_ago[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};  // 2001
  ASSERT_EQ(::utimensat(AT_FDCWD, (dir + "/manifest.json").c_str(), long_ago, 0), 0);
  const auto year_ago = std::chrono::system_clock::now() - std::chrono::hours(24 * 365);
  EXPECT_LT(list_cache_entries(options_.cache_dir).at(0).last_used.value(), year_ago);
  EXPECT_EQ(fetch_model("s3://models/tiny", options_).downloaded_bytes, 0u);
  EXPECT_GT(list_cache_entries(options_.cache_dir).at(0).last_used.value(),
            std::chrono::system_clock::now() - std::chrono::minutes(1));

  {
    FileLock filling(dir + "/.lock");  // a process checking or downloading the entry
    EXPECT_TRUE(list_cache_entries(options_.cache_dir).at(0).busy);
    EXPECT_EQ(remove_cache_entry(dir), CacheRemoval::kBusy);
    EXPECT_TRUE(file_exists(m.path + "/model.safetensors"));
  }
  EXPECT_EQ(remove_cache_entry(dir, [] { return false; }), CacheRemoval::kChanged);  // prune's check
  EXPECT_TRUE(file_exists(m.path + "/model.safetensors"));
  EXPECT_EQ(remove_cache_entry(dir), CacheRemoval::kRemoved);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(list_cache_entries(options_.cache_dir).empty());

  // Removed (by a holder of its lock) while a fetch waits for that lock: the fetch makes the entry again.
  EXPECT_EQ(fetch_model("s3://models/tiny", options_).path, m.path);
  auto holder = std::make_unique<FileLock>(dir + "/.lock");
  std::atomic<bool> waiting{false};
  options_.progress = [&](const FetchProgress& p) {
    if (p.stage == "waiting") waiting = true;
  };
  FetchedModel again;
  std::string error = "(none)";
  std::thread other([&] {
    try {
      again = fetch_model("s3://models/tiny", options_);
    } catch (const Error& e) {
      error = e.what();
    }
  });
  while (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  fs::remove_all(dir);
  holder.reset();
  other.join();
  EXPECT_EQ(error, "(none)");
  expect_same_files(again.path, test_model("tiny"));
  EXPECT_EQ(again.downloaded_bytes, again.total_bytes);
  EXPECT_TRUE(list_cache_entries(options_.cache_dir).at(0).complete);
}

// http:// and hf:// against tests/storage/model_http_server.py.
class HttpFetchTest : public ::testing::Test {
 protected:
  std::unique_ptr<testing::BackgroundProcess> serve(const std::vector<std::string>& extra, int* port) {
    const std::string dir = testing::make_temp_dir("http");
    std::vector<std::string> argv{
        CORTEX_PYTHON3, testing::source_dir() + "/tests/storage/model_http_server.py",
        "--dir",        dir + "/files",
        "--port-file",  dir + "/port"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    fs::create_directories(dir + "/files");
    for (const auto& e : fs::directory_iterator(test_model("tiny")))
      fs::copy_file(e.path(), dir + "/files/" + e.path().filename().string());
    fs::copy_file(test_model("tiny.gguf"), dir + "/files/tiny.gguf");
    auto p = std::make_unique<testing::BackgroundProcess>(argv, dir + "/log");
    *port = std::stoi(testing::wait_for_file(dir + "/port", std::chrono::seconds(20)));
    return p;
  }
  void SetUp() override {
    options_.cache_dir = testing::make_temp_dir("cache");
    ::unsetenv("HF_TOKEN");
  }
  FetchOptions options_;
};

TEST_F(HttpFetchTest, BaseUrlWithHuggingFaceNamesAndASingleGgufFile) {
  int port = 0;
  auto server = serve({}, &port);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  options_.connections = 3;  // ranged requests against this server too
  options_.parallel_min_bytes = 1 << 20;
  FetchedModel m = fetch_model(base + "/files/", options_);
  expect_same_files(m.path, test_model("tiny"));
  EXPECT_EQ(fetch_model(base + "/files", options_).downloaded_bytes, 0u);
  FetchedModel g = fetch_model(base + "/files/tiny.gguf", options_);
  EXPECT_TRUE(read_file(g.path) == read_file(test_model("tiny.gguf")));
  EXPECT_EQ(error_of([&] { fetch_model(base + "/nothing", options_); }).rfind("no such model", 0), 0u);
  EXPECT_EQ(error_of([&] { fetch_model(base + "/files/none.gguf", options_); }).rfind("no such model", 0),
            0u);
}

TEST_F(HttpFetchTest, HuggingFaceRepoWithTokenAndRevision) {
  int port = 0;
  auto server = serve({"--repo", "cortex/tiny-gpt2", "--revision", "v1", "--token", "hf_secret"}, &port);
  ::setenv("HF_ENDPOINT", ("http://127.0.0.1:" + std::to_string(port)).c_str(), 1);
  std::string denied = error_of([&] { fetch_model("hf://cortex/tiny-gpt2@v1", options_); });
  EXPECT_NE(denied.find("access denied"), std::string::npos) << denied;
  EXPECT_NE(denied.find("HF_TOKEN"), std::string::npos) << denied;
  ::setenv("HF_TOKEN", "hf_secret", 1);
  FetchedModel m = fetch_model("hf://cortex/tiny-gpt2@v1", options_);
  expect_same_files(m.path, test_model("tiny"));
  EXPECT_EQ(error_of([&] { fetch_model("hf://cortex/tiny-gpt2", options_); }).rfind("no such model", 0), 0u);
  ::unsetenv("HF_ENDPOINT");
}

TEST_F(HttpFetchTest, ABrokenOrCorruptTransferLeavesNothingThatLooksComplete) {
  int port = 0;
  {
    auto server = serve({"--break-after", "1000000"}, &port);
    std::string error =
        error_of([&] { fetch_model("http://127.0.0.1:" + std::to_string(port) + "/files", options_); });
    EXPECT_NE(error.find("broke off"), std::string::npos) << error;
  }
  {
    auto server = serve({"--corrupt"}, &port);
    std::string error =
        error_of([&] { fetch_model("http://127.0.0.1:" + std::to_string(port) + "/files", options_); });
    EXPECT_NE(error.find("checksum"), std::string::npos) << error;
  }
  // Small files may have arrived whole; the weights did not, and no manifest says the model is complete.
  for (const auto& e : fs::recursive_directory_iterator(options_.cache_dir)) {
    EXPECT_NE(e.path().filename(), "model.safetensors") << e.path();
    if (e.path().filename() == "manifest.json") {
      EXPECT_NE(read_file(e.path().string()).find("\"complete\": false"), std::string::npos);
    }
  }
}

TEST(CliFetch, GenerateFetchesAnS3ModelWithAProgressBar) {
  S3TestServer server;
  server.upload(test_model("tiny"), "models", "tiny");
  use_test_credentials(server.endpoint());
  ::setenv("CORTEX_HOME", testing::make_temp_dir("home").c_str(), 1);
  auto r = testing::run_command({testing::cortex_binary(), "generate", "--model", "s3://models/tiny",
                                 "--prompt", "hello", "--max-tokens", "3", "--temperature", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("downloading s3://models/tiny"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
  auto local = testing::run_command({testing::cortex_binary(), "generate", "--model", test_model("tiny"),
                                     "--prompt", "hello", "--max-tokens", "3", "--temperature", "0"});
  EXPECT_EQ(r.out, local.out);
  auto again = testing::run_command({testing::cortex_binary(), "generate", "--model", "s3://models/tiny",
                                     "--prompt", "hello", "--max-tokens", "3", "--temperature", "0"});
  EXPECT_NE(again.err.find("in the cache"), std::string::npos) << again.err;
  EXPECT_EQ(again.err.find("downloading"), std::string::npos) << again.err;
  // cortex pull prints where the model is; a local path is not something to pull.
  auto pulled = testing::run_command({testing::cortex_binary(), "pull", "s3://models/tiny"});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  expect_same_files(pulled.out.substr(0, pulled.out.size() - 1), test_model("tiny"));
  auto local_pull = testing::run_command({testing::cortex_binary(), "pull", test_model("tiny")});
  EXPECT_NE(local_pull.exit_code, 0);
  EXPECT_NE(local_pull.err.find("is local"), std::string::npos) << local_pull.err;
}

}  // namespace
}  // namespace cortex::storage
