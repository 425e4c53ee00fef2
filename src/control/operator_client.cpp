#include "control/operator_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "control/http_client.h"
#include "control/operator_server.h"
#include "util/error.h"
#include "util/file_util.h"
#include "util/subprocess.h"

namespace cortex::control {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool OperatorClient::running() const {
  HttpCall c;
  c.url = "http://operator/v1/info";
  c.unix_socket = operator_socket_path(home_);
  c.timeout = std::chrono::milliseconds(5000);
  HttpResponse r = http_call(c);
  // An operator that is slow to answer is still running (starting another would only fail on its lock).
  return r.ok() || r.error.find("Timeout") != std::string::npos ||
         r.error.find("timed out") != std::string::npos;
}

void OperatorClient::ensure_running(const OperatorLaunch& launch) const {
  if (running()) return;
  fs::create_directories(home_);
  fs::permissions(home_, fs::perms::owner_all, fs::perm_options::replace);
  std::string log = (fs::path(home_) / "operator.log").string();
  std::vector<std::string> args = {
      launch.cortex_binary, "--log-level",       "info",           "operator",
      "--gateway-host",     launch.gateway_host, "--gateway-port", std::to_string(launch.gateway_port)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(ErrorCode::kInternal, "cannot open " + log);
  auto log_size = fs::file_size(log);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Detach twice (new session, then a grandchild) so the daemon outlives this terminal and process.
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    close_inherited_fds();
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fd);
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (running()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // An operator that failed to start says why in its log.
    // (Another CLI starting one at the same moment is fine: the loser says "already runs" and exits.)
    auto since = fs::file_size(log);
    if (since > log_size) {
      std::string fresh = read_file_tail(log, static_cast<size_t>(since - log_size));
      if (fresh.find("error:") != std::string::npos && fresh.find("already runs") == std::string::npos)
        throw Error(ErrorCode::kInternal, "the operator did not start:\n" + fresh);
    }
  }
  throw Error(ErrorCode::kInternal, "the operator did not answer within 20 s; its log: " + log);
}

json OperatorClient::call(const std::string& method, const std::string& path, const std::string& body) const {
  HttpCall c;
  c.method = method;
  c.url = "http://operator" + path;
  c.unix_socket = operator_socket_path(home_);
  c.body = body;
  c.timeout = std::chrono::milliseconds(60'000);
  HttpResponse r = http_call(c);
  if (r.status == 0)
    throw Error(ErrorCode::kNotFound,
                "no operator is running for " + home_ + " (start one with `cortex cluster up`): " + r.error);
  json j = json::parse(r.body, nullptr, false);
  if (r.ok()) {
    if (j.is_discarded())
      throw Error(ErrorCode::kInternal, "the operator answered something that is not JSON");
    return j;
  }
  std::string message = "the operator answered " + std::to_string(r.status);
  if (!j.is_discarded() && j.contains("error") && j["error"].contains("message"))
    message = j["error"]["message"].get<std::string>();
  ErrorCode code = r.status == 404   ? ErrorCode::kNotFound
                   : r.status == 400 ? ErrorCode::kInvalidArgument
                                     : ErrorCode::kInternal;
  throw Error(code, message);
}

}  // namespace cortex::control
