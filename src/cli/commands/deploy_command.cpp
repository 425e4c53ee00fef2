// cortex deploy [PATH], cortex delete API|--all, cortex refresh API: change what runs.
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "control/config_parser.h"
#include "util/error.h"

namespace cortex::cli {

namespace {

// Polls every API of the deployment until all are live; throws when one reaches an error status (which
// waiting will not fix) or the time is up.
void wait_until_live(const control::OperatorClient& client, const control::DeploymentSpec& spec,
                     int timeout_s, bool quiet = false) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string last;
  for (;;) {
    bool all_live = true;
    for (const auto& api : spec.apis) {
      nlohmann::json a = client.get("/v1/apis/" + api.name);
      std::string status = a["status"].get<std::string>();
      if (status.rfind("error", 0) == 0 || status == "compute unavailable")
        throw Error(ErrorCode::kInternal, "api " + api.name + ": " + status + ": " +
                                              a["reason"].get<std::string>() + " (see `cortex get " +
                                              api.name + "` and `cortex logs " + api.name + "`)");
      if (status != "live") {
        all_live = false;
        last = "api " + api.name + " is " + status + " (" + a["reason"].get<std::string>() + ")";
      }
    }
    if (all_live) {
      if (!quiet) std::cout << "deployment " << spec.name << " is live\n";
      return;
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(ErrorCode::kInternal, "not live after " + std::to_string(timeout_s) + " s: " + last);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace

void add_deploy_commands(CLI::App& app) {
  struct Options {
    std::string path = ".";
    std::string api;
    bool all = false;
    std::string output = "table";
    bool wait = false;
    int timeout_s = 600;
  };
  auto o = std::make_shared<Options>();

  auto* deploy =
      app.add_subcommand("deploy", "Deploy the APIs of a project (a folder with cortex.yaml, or the file)");
  deploy->add_option("path", o->path, "Project folder or cortex.yaml")->capture_default_str();
  add_output_option(deploy, o->output);
  deploy->add_flag("--wait", o->wait,
                   "Wait until every API of the deployment is live (exit 1 on an error status)");
  deploy->add_option("--timeout", o->timeout_s, "Seconds --wait waits")->capture_default_str();
  deploy->callback([o] {
    // Validate before anything starts: a config with errors changes nothing.
    control::DeploymentSpec spec = control::load_project_config(o->path);
    for (const auto& api : spec.apis) {
      if (!api.request_handler.empty())
        throw unsupported("api '" + api.name +
                          "' request_handler: Python request handlers are not available in " +
                          "this build yet; remove request_handler to use the built-in GPT-2 handler");
    }
    auto client = operator_client(true);
    nlohmann::json result = client.post("/v1/deployments", control::to_json(spec));
    if (o->output == "json") {
      std::cout << result.dump(2) << "\n";
      if (o->wait) wait_until_live(client, spec, o->timeout_s, /*quiet=*/true);
      return;
    }
    nlohmann::json info = client.get("/v1/info");
    std::string gateway = info["gateway"].get<std::string>();
    bool changed = false;
    for (const auto& r : result["results"]) {
      std::string api = r["api"].get<std::string>(), what = r["result"].get<std::string>();
      changed |= what != "up to date";
      std::cout << (what == "created"   ? "creating "
                    : what == "updated" ? "updating "
                    : what == "deleted" ? "deleting "
                                        : "")
                << api << (what == "up to date" ? " is up to date" : "");
      if (what != "deleted") std::cout << "  (" << gateway << "/" << spec.name << "/" << api << ")";
      std::cout << "\n";
    }
    if (!changed) {
      std::cout << "deployment " << spec.name << " is up to date\n";
    } else if (!o->wait) {
      std::cout << "Deployment started; watch it with `cortex get --watch`\n";
    }
    if (o->wait) wait_until_live(client, spec, o->timeout_s);
  });

  auto* del = app.add_subcommand("delete", "Delete an API (its replicas stop once their requests finish)");
  del->add_option("api", o->api, "API name");
  del->add_flag("--all", o->all, "Delete every API");
  del->callback([o] {
    if (o->api.empty() == !o->all) throw invalid_argument("name one API, or pass --all");
    auto client = operator_client(false);
    nlohmann::json result = o->all ? client.del("/v1/apis") : client.del("/v1/apis/" + o->api);
    if (result["deleted"].empty()) std::cout << "no APIs to delete\n";
    for (const auto& name : result["deleted"]) std::cout << "deleting " << name.get<std::string>() << "\n";
  });

  auto* refresh =
      app.add_subcommand("refresh", "Restart an API's replicas (new ones ready before old ones stop)");
  refresh->add_option("api", o->api, "API name")->required();
  refresh->callback([o] {
    operator_client(false).post("/v1/apis/" + o->api + "/refresh");
    std::cout << "refreshing " << o->api << "\n";
  });
}

}  // namespace cortex::cli
