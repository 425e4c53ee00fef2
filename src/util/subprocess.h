// Running a helper program to completion and collecting its output (tests and benchmarks use it to run
// reference implementations such as node and python).
#pragma once

#include <string>
#include <vector>

namespace cortex {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal number when killed by a signal
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs argv (argv[0] looked up on PATH; no shell) with `input` on stdin and waits for it to exit.
// Throws Error(kNotFound) when the program cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input = "");

// For a forked child before exec: closes every descriptor above 2 (a parent's sockets, which libraries
// such as asio open without O_CLOEXEC). Async-signal-safe.
void close_inherited_fds();

}  // namespace cortex
