// cortex operator: the daemon (foreground), and cortex cluster up|down|info to manage it.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "control/operator_server.h"
#include "util/error.h"

namespace cortex::cli {

namespace {

void print_info(const nlohmann::json& info, bool as_json) {
  if (as_json) {
    std::cout << info.dump(2) << "\n";
    return;
  }
  std::cout << "operator:  running (pid " << info["pid"] << ", provider "
            << info["provider"].get<std::string>() << ")\n"
            << "home:      " << info["home"].get<std::string>() << "\n"
            << "socket:    " << info["socket"].get<std::string>() << "\n"
            << "gateway:   " << info["gateway"].get<std::string>() << "\n"
            << "apis:      " << info["apis"] << "\n";
}

}  // namespace

void add_operator_commands(CLI::App& app) {
  struct Options {
    control::OperatorOptions op;
    int request_timeout_s = 300;
    std::string output = "table";
  };
  auto o = std::make_shared<Options>();
  control::OperatorLaunch launch = default_operator_launch();
  o->op.gateway.host = launch.gateway_host;
  o->op.gateway.port = launch.gateway_port;

  auto* op = app.add_subcommand("operator",
                                "Run the operator daemon in the foreground (the CLI starts it on demand)");
  op->add_option("--gateway-host", o->op.gateway.host, "Address the gateway listens on")
      ->capture_default_str();
  op->add_option("--gateway-port", o->op.gateway.port, "Gateway port (0: any free port)")
      ->capture_default_str();
  op->add_option("--request-timeout", o->request_timeout_s, "Seconds a request may take end to end")
      ->capture_default_str();
  op->callback([o] {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    o->op.home = control::cortex_home();
    o->op.cortex_binary = self_executable();
    o->op.gateway.request_timeout = std::chrono::seconds(o->request_timeout_s);
    o->op.reconciler.drain_timeout = std::chrono::seconds(o->request_timeout_s + 10);
    auto server = control::OperatorServer::start(o->op);
    std::fprintf(stderr, "cortex operator: listening on %s; gateway on http://%s:%d\n",
                 server->socket_path().c_str(), o->op.gateway.host.c_str(), server->gateway_port());
    server->wait();
    std::fprintf(stderr, "cortex operator: stopping replicas\n");
    server.reset();
    std::fprintf(stderr, "cortex operator: stopped\n");
  });

  auto* cluster = app.add_subcommand("cluster", "Start, stop or show the local operator");
  cluster->require_subcommand(1);
  auto* up = cluster->add_subcommand("up", "Start the operator (and its gateway) if none runs");
  auto launch_options = std::make_shared<control::OperatorLaunch>(launch);
  up->add_option("--gateway-host", launch_options->gateway_host, "Address the gateway listens on")
      ->capture_default_str();
  up->add_option("--gateway-port", launch_options->gateway_port, "Gateway port (0: any free port)")
      ->capture_default_str();
  add_output_option(up, o->output);
  up->callback([o, launch_options] {
    control::OperatorClient client(control::cortex_home());
    bool was_running = client.running();
    client.ensure_running(*launch_options);
    if (o->output != "json")
      std::cout << (was_running ? "the operator was already running\n" : "operator started\n");
    print_info(client.get("/v1/info"), o->output == "json");
  });
  auto* down = cluster->add_subcommand("down", "Stop every replica and the operator");
  down->callback([] {
    control::OperatorClient client(control::cortex_home());
    if (!client.running()) {
      std::cout << "no operator is running for " << client.home() << "\n";
      return;
    }
    int pid = client.get("/v1/info")["pid"].get<int>();
    try {
      client.post("/v1/shutdown");
    } catch (const Error&) {
      // The operator may close the socket before its answer is out; the wait below tells.
    }
    // The operator stops its replicas, then exits: wait for the process itself.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (::kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (::kill(pid, 0) == 0) throw Error(ErrorCode::kInternal, "the operator is still running after 60 s");
    std::cout << "operator stopped (with its replicas)\n";
  });
  auto* info = cluster->add_subcommand("info", "Where the operator listens and what it runs");
  add_output_option(info, o->output);
  info->callback([o] {
    auto client = operator_client(false);
    if (!client.running()) throw Error(ErrorCode::kNotFound, "no operator is running for " + client.home());
    print_info(client.get("/v1/info"), o->output == "json");
  });
}

}  // namespace cortex::cli
