// How the CLI reaches the operator: HTTP over $CORTEX_HOME/operator.sock. When no operator answers, the
// client can start one in the background (like a docker or ollama daemon): `cortex operator`, detached
// from the terminal, its output in $CORTEX_HOME/operator.log.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "util/file_util.h"

namespace cortex::control {

using cortex::cortex_home;  // $CORTEX_HOME, or ~/.cortex

struct OperatorLaunch {
  std::string cortex_binary;  // the `cortex` executable
  std::string gateway_host = "127.0.0.1";
  int gateway_port = 8888;
};

class OperatorClient {
 public:
  explicit OperatorClient(std::string home) : home_(std::move(home)) {}

  // True when an operator answers on the socket.
  bool running() const;
  // Starts an operator when none runs and waits (up to 20 s) until it answers; throws Error with the
  // tail of its log when it does not come up.
  void ensure_running(const OperatorLaunch& launch) const;

  // Calls the operator; returns the JSON body of a 2xx answer. Throws Error with the operator's message
  // otherwise (kNotFound for 404, kInvalidArgument for 400, kInternal else), or when none runs.
  nlohmann::json get(const std::string& path) const { return call("GET", path, ""); }
  nlohmann::json post(const std::string& path, const nlohmann::json& body = nlohmann::json::object()) const {
    return call("POST", path, body.dump());
  }
  nlohmann::json del(const std::string& path) const { return call("DELETE", path, ""); }

  const std::string& home() const { return home_; }

 private:
  nlohmann::json call(const std::string& method, const std::string& path, const std::string& body) const;
  std::string home_;
};

}  // namespace cortex::control
