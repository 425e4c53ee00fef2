#include "bench/tokenizer_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"
#include "util/file_util.h"

extern char** environ;

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

struct Output {
  int exit_code = -1;
  std::string out, err;
};

// Runs argv (no shell) with `input` on stdin; collects stdout and stderr.
Output run(const std::vector<std::string>& argv, const std::string& input) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw Error(ErrorCode::kInternal, "pipe failed");
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    throw Error(ErrorCode::kInternal, "pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    throw not_found("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  // Writing stdin from a thread: node reads all of it before writing anything, but do not rely on it.
  std::thread writer([fd = in[1], &input] {
    // If node exits early, write() fails with EPIPE; SIGPIPE, blocked in this thread only, stays
    // pending on it and is discarded when it ends.
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
    size_t done = 0;
    while (done < input.size()) {
      const ssize_t n = write(fd, input.data() + done, input.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fd);
  });
  Output result;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  writer.join();
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
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
  const Output out =
      run({"node", node_script_path, "--package", vocab_dir, "--passes", std::to_string(kPasses), "--trials",
           std::to_string(kTrials)},
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
