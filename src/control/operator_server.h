// The operator: the daemon behind the CLI, one per $CORTEX_HOME. It keeps the deployed APIs in the state
// store, runs their replicas through the provider (the reconciler), routes traffic to them (the gateway)
// and answers the CLI over HTTP on a unix socket, $CORTEX_HOME/operator.sock (the folder is 0700, the
// socket 0600: only its owner can talk to it).
//
// Its API (JSON bodies; errors as {"error": {"message": ...}}):
//   GET    /v1/info                   pid, gateway URL, socket, provider, API count
//   POST   /v1/deployments            body: a resolved DeploymentSpec → {"deployment", "results": [{api,
//   result}]} GET    /v1/apis                   every API's status GET    /v1/apis/NAME              one API:
//   status, replicas, endpoint, signature, events, last log lines DELETE /v1/apis/NAME, /v1/apis    delete
//   one API, or all POST   /v1/apis/NAME/refresh      roll its replicas over POST   /v1/shutdown stop every
//   replica, then the operator
#pragma once

#include <memory>
#include <string>

#include "control/gateway.h"
#include "control/reconciler.h"

namespace cortex::control {

struct OperatorOptions {
  std::string home;           // $CORTEX_HOME
  std::string cortex_binary;  // what replicas run
  GatewayOptions gateway;
  ReconcilerOptions reconciler;
};

class OperatorServer {
 public:
  // Takes the operator lock of `home` (fails when another operator holds it), opens the state, stops
  // replicas a dead predecessor left behind, starts the gateway, the reconciler and the API socket.
  static std::unique_ptr<OperatorServer> start(const OperatorOptions& options);
  ~OperatorServer();  // stops every replica, then everything else
  // Blocks until SIGINT, SIGTERM or POST /v1/shutdown. The caller must have blocked SIGINT and SIGTERM
  // in every thread (before start) so that this receives them.
  void wait();
  int gateway_port() const;
  std::string socket_path() const;

  struct Impl;

 private:
  explicit OperatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

std::string operator_socket_path(const std::string& home);

}  // namespace cortex::control
