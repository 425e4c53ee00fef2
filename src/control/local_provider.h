// The local provider: each replica is a `cortex serve` process on this machine, listening on a free
// loopback port, its output appended to $CORTEX_HOME/logs/<api>/<replica>.log. Replicas are put in their
// own process group and get SIGTERM when the operator dies (PR_SET_PDEATHSIG), so none outlives it.
#pragma once

#include <map>
#include <memory>

#include "control/replica_provider.h"
#include "util/clock.h"

namespace cortex::control {

struct LocalProviderOptions {
  std::string cortex_binary;  // the `cortex` executable to run (`serve` is appended)
  std::string home;           // $CORTEX_HOME: logs/ and run/ go here
  int request_timeout_s = 300;
};

class LocalProvider : public ReplicaProvider {
 public:
  explicit LocalProvider(LocalProviderOptions options);
  ~LocalProvider() override;  // kills every replica still running
  std::string name() const override { return "local"; }
  std::string compute_unavailable(const ComputeSpec& compute) const override;
  void start(const ReplicaLaunch& launch) override;
  ReplicaStatus poll(const std::string& id) override;
  void stop(const std::string& id, std::chrono::milliseconds grace) override;
  void forget(const std::string& id) override;
  std::string log_path(const std::string& api, const std::string& id) const override;

  // The command line a replica of `spec` runs (shown by `cortex describe`).
  std::vector<std::string> command_line(const ReplicaLaunch& launch) const;

 private:
  struct Process {
    int pid = 0;
    std::string api;
    std::string port_file;
    std::string endpoint;
    bool exited = false;
    int exit_code = 0;
    bool stop_requested = false;
    SteadyClock::time_point kill_at;
  };
  LocalProviderOptions options_;
  std::map<std::string, Process> processes_;  // by replica id; used on the reconciler thread only
};

}  // namespace cortex::control
