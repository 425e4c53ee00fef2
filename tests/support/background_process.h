// A program the test runs beside itself (a server): started with its output in a log file, killed (and
// reaped) when the object goes away.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace cortex::testing {

class BackgroundProcess {
 public:
  // Starts argv (argv[0] looked up on PATH) with stdout and stderr appended to log_path.
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  int pid() const { return pid_; }
  // SIGKILL, then waits for it.
  void kill();
  const std::string& log_path() const { return log_path_; }

 private:
  int pid_ = -1;
  std::string log_path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();
// Waits until `path` exists and is not empty, then returns its contents ("" after the timeout).
std::string wait_for_file(const std::string& path, std::chrono::milliseconds timeout);
// Waits until something accepts TCP connections on 127.0.0.1:port.
bool wait_for_port(int port, std::chrono::milliseconds timeout);

}  // namespace cortex::testing
