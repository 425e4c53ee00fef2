#include "control/local_provider.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_util.h"
#include "util/subprocess.h"

namespace cortex::control {

namespace fs = std::filesystem;

LocalProvider::LocalProvider(LocalProviderOptions options) : options_(std::move(options)) {
  fs::create_directories(fs::path(options_.home) / "logs");
  fs::create_directories(fs::path(options_.home) / "run");
}

LocalProvider::~LocalProvider() {
  for (auto& [id, p] : processes_) {
    if (p.exited) continue;
    ::kill(p.pid, SIGKILL);
    ::waitpid(p.pid, nullptr, 0);
  }
}

std::string LocalProvider::compute_unavailable(const ComputeSpec& compute) const {
  if (compute.gpu > 0)
    return "compute.gpu is " + std::to_string(compute.gpu) +
           " but this build has no GPU backend (the local provider runs replicas on the CPU only)";
  return "";
}

std::string LocalProvider::log_path(const std::string& api, const std::string& id) const {
  return (fs::path(options_.home) / "logs" / api / (id + ".log")).string();
}

std::vector<std::string> LocalProvider::command_line(const ReplicaLaunch& launch) const {
  fs::path run = fs::path(options_.home) / "run";
  return {options_.cortex_binary,
          "--log-level",
          "info",
          "serve",
          "--spec",
          (run / (launch.id + ".json")).string(),
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--port-file",
          (run / (launch.id + ".port")).string(),
          "--request-timeout",
          std::to_string(options_.request_timeout_s)};
}

void LocalProvider::start(const ReplicaLaunch& launch) {
  // The replica reads its resolved spec from a file (0600: it may hold the API key).
  std::string spec_file = (fs::path(options_.home) / "run" / (launch.id + ".json")).string();
  write_file_atomic(spec_file, to_json(launch.spec).dump(2));
  fs::permissions(spec_file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  std::vector<std::string> args = command_line(launch);
  std::string log = log_path(launch.spec.name, launch.id);
  fs::create_directories(fs::path(log).parent_path());
  std::string port_file = (fs::path(options_.home) / "run" / (launch.id + ".port")).string();
  fs::remove(port_file);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(ErrorCode::kInternal, "cannot open " + log + ": " + std::strerror(errno));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    throw Error(ErrorCode::kInternal, std::string("cannot start a replica: fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the operator died before prctl took effect
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    close_inherited_fds();  // the operator's sockets (asio opens them without O_CLOEXEC)
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    const char msg[] = "cortex operator: cannot execute the cortex binary\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(fd);
  Process p;
  p.pid = pid;
  p.api = launch.spec.name;
  p.port_file = port_file;
  processes_[launch.id] = p;
}

ReplicaStatus LocalProvider::poll(const std::string& id) {
  ReplicaStatus status;
  auto it = processes_.find(id);
  if (it == processes_.end()) return status;
  Process& p = it->second;
  status.known = true;
  status.pid = p.pid;
  if (!p.exited) {
    int wstatus = 0;
    pid_t r = ::waitpid(p.pid, &wstatus, WNOHANG);
    if (r == p.pid) {
      p.exited = true;
      p.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
      fs::remove(p.port_file);
      fs::remove(fs::path(p.port_file).replace_extension(".json"));
    } else if (p.stop_requested && SteadyClock::now() >= p.kill_at) {
      ::kill(p.pid, SIGKILL);
    }
  }
  if (!p.exited && p.endpoint.empty()) {
    std::ifstream in(p.port_file);
    int port = 0;
    if (in >> port && port > 0) p.endpoint = "http://127.0.0.1:" + std::to_string(port);
  }
  status.running = !p.exited;
  status.exit_code = p.exit_code;
  status.killed_by_us = p.stop_requested;
  status.endpoint = p.endpoint;
  return status;
}

void LocalProvider::stop(const std::string& id, std::chrono::milliseconds grace) {
  auto it = processes_.find(id);
  if (it == processes_.end() || it->second.exited) return;
  Process& p = it->second;
  if (!p.stop_requested) {
    p.stop_requested = true;
    p.kill_at = SteadyClock::now() + grace;
    ::kill(p.pid, SIGTERM);
  }
}

void LocalProvider::forget(const std::string& id) {
  auto it = processes_.find(id);
  if (it == processes_.end()) return;
  if (!it->second.exited) {
    ::kill(it->second.pid, SIGKILL);
    ::waitpid(it->second.pid, nullptr, 0);
  }
  processes_.erase(it);
}

}  // namespace cortex::control
