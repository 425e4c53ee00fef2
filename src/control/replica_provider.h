// How the operator runs replicas. Everything the reconciler does to a replica goes through this
// interface, so that another provider (Kubernetes: one pod per replica) can replace the local one without
// changes above it. Calls are made from the reconciler's thread only and must not block for long: start
// and stop return at once, poll is cheap.
#pragma once

#include <chrono>
#include <string>

#include "control/api_spec.h"

namespace cortex::control {

struct ReplicaLaunch {
  std::string id;  // unique among all replicas of this operator, e.g. "generator-000004"
  ApiSpec spec;
};

struct ReplicaStatus {
  bool running = false;
  bool known = false;         // false when the provider has never heard of this id (or forgot it)
  int exit_code = 0;          // when not running: the exit status, or 128 + signal
  bool killed_by_us = false;  // it ended because stop() asked it to
  std::string endpoint;       // "http://127.0.0.1:PORT" once the replica listens; empty before
  int pid = 0;                // where meaningful (the local provider)
};

class ReplicaProvider {
 public:
  virtual ~ReplicaProvider() = default;
  virtual std::string name() const = 0;
  // Why this provider cannot give a replica the requested compute (for instance a GPU), or "" when it can.
  virtual std::string compute_unavailable(const ComputeSpec& compute) const = 0;
  // Starts a replica; returns once it is started (it loads its model on its own). Throws Error when it
  // cannot be started at all.
  virtual void start(const ReplicaLaunch& launch) = 0;
  // Its state now. Reaps an exited process; sends SIGKILL once a stop's grace period has passed.
  virtual ReplicaStatus poll(const std::string& id) = 0;
  // Asks it to stop (SIGTERM); after `grace` it is killed. Returns at once.
  virtual void stop(const std::string& id, std::chrono::milliseconds grace) = 0;
  // Drops the bookkeeping of an exited replica.
  virtual void forget(const std::string& id) = 0;
  // Where the replica's output goes (what `cortex logs` reads).
  virtual std::string log_path(const std::string& api, const std::string& id) const = 0;
};

}  // namespace cortex::control
