// docs/cli.md and docs/api.md: every example in them works as shown.
//
// Convention (see the docs themselves):
//  - Each ```sh block is a script: it runs with `bash -e`, in the order of the doc, and must exit 0. A
//    block right below the line <!-- not run --> is skipped (commands that never end: `cortex operator`,
//    `--watch`, `-f`).
//  - A ```text block that follows an ```sh block (only blank lines between) is what the script prints
//    (stdout and stderr together): each of its non-blank lines must appear in the output, in that order
//    (other output lines may come between). Lines are compared with leading and trailing spaces removed
//    and runs of spaces taken as one (table columns line up differently with other values); `...` in a
//    line stands for any text, and a line that is only `...` stands for nothing.
//  - The blocks of one doc share one environment: a project folder (the working directory) holding the
//    files of examples/text-generator with `model` linked to the tiny test model, a fresh $CORTEX_HOME,
//    a free gateway port in $CORTEX_GATEWAY_PORT, and the built `cortex` first on PATH. The doc's ports
//    8888 (the gateway) and 8080 (a `cortex serve` of its own) become free ports in scripts and output.
//    curl runs with --no-progress-meter (a .curlrc), as it behaves at a terminal.
//  - After a script that deploys, refreshes or starts the operator, the harness waits until no API is
//    `updating`, as a reader would wait for `cortex get --watch` to show `live`.
// Processes a script leaves running in the background (`cortex serve ... &`) are stopped at the end.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "support/background_process.h"
#include "support/test_models.h"
#include "util/file_util.h"

namespace cortex::control {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// ---- Reading the docs ----

struct Block {
  size_t line = 0;  // of the opening fence, 1-based
  std::string code;
  bool run = true;
  std::optional<std::string> expected;
  size_t expected_line = 0;
};

// The ```sh blocks of a markdown text, each with the ```text block that follows it (if any).
std::vector<Block> sh_blocks(const std::string& markdown) {
  std::vector<std::string> lines;
  std::istringstream in(markdown);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  struct Fenced {
    size_t open, close;  // line indexes of the fences
    std::string info, text;
  };
  std::vector<Fenced> fenced;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("```", 0) != 0) continue;
    Fenced f{i, i, lines[i].substr(3), ""};
    while (++i < lines.size() && lines[i] != "```") f.text += lines[i] + "\n";
    f.close = i;
    fenced.push_back(f);
  }
  auto blank_between = [&](size_t from, size_t to) {  // lines (from, to) exclusive are all blank
    for (size_t i = from + 1; i < to; ++i)
      if (lines[i].find_first_not_of(" \t") != std::string::npos) return false;
    return true;
  };
  std::vector<Block> blocks;
  for (size_t k = 0; k < fenced.size(); ++k) {
    if (fenced[k].info != "sh") continue;
    Block b;
    b.line = fenced[k].open + 1;
    b.code = fenced[k].text;
    size_t above = fenced[k].open;
    while (above > 0 && lines[above - 1].find_first_not_of(" \t") == std::string::npos) --above;
    b.run = !(above > 0 && lines[above - 1] == "<!-- not run -->");
    if (k + 1 < fenced.size() && fenced[k + 1].info == "text" &&
        blank_between(fenced[k].close, fenced[k + 1].open)) {
      b.expected = fenced[k + 1].text;
      b.expected_line = fenced[k + 1].open + 1;
    }
    blocks.push_back(b);
  }
  return blocks;
}

// The doc's ports (whole numbers only: 8888 in 18888 stays) replaced by the test's.
std::string rewrite_ports(const std::string& text, int gateway_port, int replica_port) {
  std::string out;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  for (size_t i = 0; i < text.size();) {
    bool standalone = (i == 0 || !digit(text[i - 1])) && (i + 4 >= text.size() || !digit(text[i + 4]));
    if (standalone && text.compare(i, 4, "8888") == 0) {
      out += std::to_string(gateway_port);
      i += 4;
    } else if (standalone && text.compare(i, 4, "8080") == 0) {
      out += std::to_string(replica_port);
      i += 4;
    } else {
      out += text[i++];
    }
  }
  return out;
}

// ---- Matching the output ----

// Without carriage returns, leading and trailing spaces; runs of spaces and tabs as one space.
std::string normalize(const std::string& line) {
  std::string out;
  bool space = false;
  for (char c : line) {
    if (c == '\r') continue;
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// True when `text` matches `pattern`, in which "..." stands for any text (also none).
bool glob_match(const std::string& pattern, const std::string& text) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    size_t dots = pattern.find("...", start);
    parts.push_back(pattern.substr(start, dots == std::string::npos ? std::string::npos : dots - start));
    if (dots == std::string::npos) break;
    start = dots + 3;
  }
  if (parts.size() == 1) return pattern == text;
  const std::string &first = parts.front(), &last = parts.back();
  if (text.size() < first.size() + last.size() || text.compare(0, first.size(), first) != 0 ||
      text.compare(text.size() - last.size(), last.size(), last) != 0)
    return false;
  size_t pos = first.size();
  const size_t end = text.size() - last.size();
  for (size_t k = 1; k + 1 < parts.size(); ++k) {
    size_t found = text.find(parts[k], pos);
    if (found == std::string::npos || found + parts[k].size() > end) return false;
    pos = found + parts[k].size();
  }
  return true;
}

// "" when every line of `expected` appears in `output` in order; otherwise the lines that do not.
std::string missing_lines(const std::string& expected, const std::string& output) {
  std::vector<std::string> out_lines;
  std::istringstream out(output);
  for (std::string line; std::getline(out, line);) out_lines.push_back(normalize(line));
  std::string missing;
  size_t next = 0;
  std::istringstream want(expected);
  for (std::string line; std::getline(want, line);) {
    std::string pattern = normalize(line);
    if (pattern.empty() || pattern == "...") continue;
    size_t i = next;
    while (i < out_lines.size() && !glob_match(pattern, out_lines[i])) ++i;
    if (i == out_lines.size())
      missing += "  " + pattern + "\n";
    else
      next = i + 1;
  }
  return missing;
}

TEST(DocsHarnessTest, FindsBlocksMarksAndExpectedOutput) {
  const std::string md =
      "# Title\n```sh\necho one\n```\n\n```text\none\n```\n"
      "<!-- not run -->\n```sh\nsleep inf\n```\n```text\nnever\n```\n"
      "```\nsynopsis\n```\n```sh\necho two\n```\nprose\n```text\nnot its output\n```\n";
  auto blocks = sh_blocks(md);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[0].code, "echo one\n");
  EXPECT_TRUE(blocks[0].run);
  EXPECT_EQ(blocks[0].expected.value_or("<none>"), "one\n");
  EXPECT_EQ(blocks[0].line, 2u);
  EXPECT_FALSE(blocks[1].run);
  EXPECT_EQ(blocks[2].code, "echo two\n");
  EXPECT_TRUE(blocks[2].run);
  EXPECT_FALSE(blocks[2].expected.has_value());
}

TEST(DocsHarnessTest, MatchesLinesInOrderWithElisions) {
  EXPECT_TRUE(glob_match("a...c", "abbbc"));
  EXPECT_TRUE(glob_match("a...c", "ac"));
  EXPECT_FALSE(glob_match("a...c", "abcd"));
  EXPECT_TRUE(glob_match("...x...y...", "1x2y3"));
  EXPECT_FALSE(glob_match("...y...x...", "1x2y3"));
  EXPECT_FALSE(glob_match("ab...ba", "aba"));  // the ends must not overlap
  const std::string output = "header\napi   status\r\ngenerator    live   1/1\nlast\n";
  EXPECT_EQ(missing_lines("api status\n...\ngenerator live ...\n\nlast\n", output), "");
  EXPECT_EQ(missing_lines("last\nheader\n", output), "  header\n");  // out of order
  EXPECT_EQ(missing_lines("generator dead\n", output), "  generator dead\n");
}

TEST(DocsHarnessTest, RewritesWholePortNumbersOnly) {
  EXPECT_EQ(rewrite_ports("curl http://localhost:8888/x --port 8080 18888 88880", 123, 456),
            "curl http://localhost:123/x --port 456 18888 88880");
}

// ---- Running the docs ----

using testing::free_port;

struct ScriptResult {
  int exit_code = -1;  // 128 + signal when killed
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved as written
};

class DocsExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cortex_ = fs::absolute(testing::cortex_binary()).lexically_normal().string();
    ASSERT_TRUE(fs::exists(cortex_)) << cortex_;
    ASSERT_TRUE(fs::exists(testing::test_model("tiny"))) << "run the make_test_models fixture first";
    home_ = fs::absolute(testing::make_temp_dir("docs-home")).string();
    project_ = fs::absolute(testing::make_temp_dir("docs-project")).string();
    scratch_ = fs::absolute(testing::make_temp_dir("docs-scripts")).string();
    gateway_port_ = free_port();
    do replica_port_ = free_port();
    while (replica_port_ == gateway_port_);
    // The example project, its model the tiny test model.
    for (const auto& e : fs::directory_iterator(testing::source_dir() + "/examples/text-generator"))
      if (e.is_regular_file()) fs::copy_file(e.path(), fs::path(project_) / e.path().filename());
    ASSERT_TRUE(fs::exists(project_ + "/cortex.yaml"));
    fs::create_directory_symlink(fs::absolute(testing::test_model("tiny")), project_ + "/model");
    // The environment of every script (and of the cortex commands this test runs).
    ::setenv("CORTEX_HOME", home_.c_str(), 1);
    ::setenv("CORTEX_GATEWAY_PORT", std::to_string(gateway_port_).c_str(), 1);
    ::unsetenv("CORTEX_GATEWAY_HOST");
    ::unsetenv("CORTEX_API_KEY");
    const char* path = std::getenv("PATH");
    std::string bin = fs::path(cortex_).parent_path().string();
    ::setenv("PATH", (bin + ":" + (path ? path : "/usr/bin:/bin")).c_str(), 1);
    ::setenv("NO_PROXY", "localhost,127.0.0.1", 1);
    // curl as at a terminal: without the progress meter it shows when its output is not one.
    write_file_atomic(scratch_ + "/.curlrc", "no-progress-meter\n");
    ::setenv("CURL_HOME", scratch_.c_str(), 1);
    ::setenv("no_proxy", "localhost,127.0.0.1", 1);
  }

  void TearDown() override {
    testing::run_command({cortex_, "cluster", "down"});
    // What scripts left running (each script ran in a process group of its own).
    for (pid_t group : groups_) ::kill(-group, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (pid_t group : groups_) {
      while (::kill(-group, 0) == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(50ms);
      ::kill(-group, SIGKILL);
    }
  }

  // Runs `script` with bash -e in the project folder, stdin from /dev/null.
  ScriptResult run_script(const std::string& script, std::chrono::seconds timeout) {
    const std::string n = std::to_string(groups_.size());
    const std::string script_path = scratch_ + "/block-" + n + ".sh";
    const std::string output_path = scratch_ + "/block-" + n + ".out";
    write_file_atomic(script_path, script);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      int in = ::open("/dev/null", O_RDONLY);
      int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in < 0 || out < 0 || ::chdir(project_.c_str()) != 0) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::close_range(3, ~0U, 0);
      ::execl("/bin/bash", "bash", "-e", script_path.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ScriptResult result;
    if (pid < 0) return result;
    ::setpgid(pid, pid);  // also here, so that the group exists whichever runs first
    groups_.push_back(pid);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
      pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) break;
      if (std::chrono::steady_clock::now() > deadline) {
        result.timed_out = true;
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.output = read_file(output_path);
    return result;
  }

  // Waits until no API is `updating`; returns the last view when that does not happen in time.
  std::string wait_settled(std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last;
    for (;;) {
      auto r = testing::run_command({cortex_, "get", "-o", "json"});
      last = r.out + r.err;
      json apis = json::parse(r.out, nullptr, false);
      bool settled = r.exit_code == 0 && apis.is_array();
      if (settled)
        for (const auto& a : apis) settled = settled && a.value("status", "") != "updating";
      if (settled) return "";
      if (std::chrono::steady_clock::now() > deadline) return last.empty() ? "(no answer)" : last;
      std::this_thread::sleep_for(200ms);
    }
  }

  // Runs the doc's examples; returns how many ran.
  int run_doc(const std::string& name) {
    const std::string path = testing::source_dir() + "/docs/" + name;
    std::string markdown;
    try {
      markdown = read_file(path);
    } catch (const std::exception& e) {
      ADD_FAILURE() << path << ": " << e.what();
      return 0;
    }
    int ran = 0;
    for (const Block& block : sh_blocks(markdown)) {
      if (!block.run) continue;
      const std::string where = "docs/" + name + ":" + std::to_string(block.line);
      const std::string script = rewrite_ports(block.code, gateway_port_, replica_port_);
      ScriptResult r = run_script(script, 120s);
      ++ran;
      if (r.exit_code != 0) {
        ADD_FAILURE() << where << ": the example " << (r.timed_out ? "did not end within 120 s" : "failed")
                      << " (exit status " << r.exit_code << ")\n--- script\n"
                      << script << "--- output\n"
                      << r.output;
        return ran;  // the examples after it build on it
      }
      if (block.expected) {
        std::string missing =
            missing_lines(rewrite_ports(*block.expected, gateway_port_, replica_port_), r.output);
        EXPECT_EQ(missing, "") << where << ": lines of the ```text block at docs/" << name << ":"
                               << block.expected_line << " missing from the output (in order)\n--- script\n"
                               << script << "--- output\n"
                               << r.output;
      }
      if (script.find("cortex deploy") != std::string::npos ||
          script.find("cortex refresh") != std::string::npos ||
          script.find("cortex cluster up") != std::string::npos) {
        std::string unsettled = wait_settled(90s);
        if (!unsettled.empty()) {
          ADD_FAILURE() << where << ": APIs still updating 90 s after the example:\n" << unsettled;
          return ran;
        }
      }
    }
    return ran;
  }

  std::string cortex_, home_, project_, scratch_;
  int gateway_port_ = 0, replica_port_ = 0;
  std::vector<pid_t> groups_;  // process groups of the scripts run
};

TEST_F(DocsExamplesTest, CliReference) {
  EXPECT_GE(run_doc("cli.md"), 10);
}

TEST_F(DocsExamplesTest, ApiReference) {
  EXPECT_GE(run_doc("api.md"), 10);
}

}  // namespace
}  // namespace cortex::control
