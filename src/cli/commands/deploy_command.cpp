// cortex deploy [PATH], cortex delete API|--all, cortex refresh API: change what runs.
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "cli/progress_bar.h"
#include "control/config_parser.h"
#include "storage/model_environment.h"
#include "storage/model_uri.h"
#include "util/error.h"
#include "util/subprocess.h"

namespace cortex::cli {

namespace {

// Polls every API of the deployment until all are live; throws when one reaches an error status (which
// waiting will not fix) or the time is up.
void wait_until_live(const control::OperatorClient& client, const control::DeploymentSpec& spec,
                     int timeout_s, bool quiet = false) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string last;
  std::map<std::string, std::unique_ptr<ProgressBar>> downloads;  // per API whose model downloads
  for (;;) {
    bool all_live = true;
    for (const auto& api : spec.apis) {
      nlohmann::json a = client.get("/v1/apis/" + api.name);
      std::string status = a["status"].get<std::string>();
      if (a.contains("model_download") && a["model_download"].is_object() && !quiet) {
        const auto& d = a["model_download"];
        auto& bar = downloads[api.name];
        if (!bar) bar = std::make_unique<ProgressBar>("api " + api.name + ": downloading " + api.model);
        storage::FetchProgress p;
        p.stage = d["stage"].get<std::string>();
        p.done = d["bytes_done"].get<uint64_t>();
        p.total = d["bytes_total"].get<uint64_t>();
        p.bytes_per_second = d["bytes_per_second"].get<double>();
        bar->update(p);
      } else {
        downloads.erase(api.name);
      }
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

// Checks what a requirements.txt beside cortex.yaml lists: request handlers run in the replica's embedded
// Python with the system's packages, and nothing is downloaded, so each listed distribution must be
// installed for that Python already. Version specifiers and markers are checked when the `packaging`
// module is installed, the names only otherwise. Throws Error(kInvalidArgument) naming the file, line and
// distribution of every requirement that is not met.
void check_requirements(const std::string& project_dir) {
  namespace fs = std::filesystem;
  const fs::path file = fs::path(project_dir) / "requirements.txt";
  std::error_code ec;
  if (!fs::exists(file, ec)) return;
  std::ifstream in(file);
  if (!in) throw invalid_argument(file.string() + ": cannot read it");
  static const std::regex kName(R"(^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$)");
  nlohmann::json requirements = nlohmann::json::array();
  std::string line;
  std::vector<std::string> errors;
  for (int number = 1; std::getline(in, line); ++number) {
    if (auto hash = line.find('#'); hash != std::string::npos && (hash == 0 || std::isspace(line[hash - 1])))
      line.erase(hash);
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (line.empty()) continue;
    const std::string where = file.string() + ":" + std::to_string(number) + ": ";
    std::smatch m;
    if (line[0] == '-') {
      errors.push_back(where + "'" + line +
                       "': pip options are not supported; list one distribution per line");
    } else if (!std::regex_match(line, m, kName) ||
               (m[3].length() > 0 && std::string("=<>!~;@").find(m[3].str()[0]) == std::string::npos)) {
      errors.push_back(where + "'" + line + "': not a distribution name (such as regex or numpy>=1.20)");
    } else {
      requirements.push_back({{"line", number}, {"name", m[1].str()}, {"text", line}});
    }
  }
  if (!requirements.empty()) {
    // Asks the Python that replicas embed (its importlib.metadata; `packaging` for specifiers if present).
    static const char* kCheck = R"PY(
import json, sys
import importlib.metadata as md
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
out = []
for r in json.load(sys.stdin):
    try:
        installed = md.version(r["name"])
    except md.PackageNotFoundError:
        installed = None
    problem = None if installed else "not installed"
    if Requirement is not None:
        try:
            req = Requirement(r["text"])
            if req.marker is not None and not req.marker.evaluate():
                problem = None
            elif installed and not req.specifier.contains(installed, prereleases=True):
                problem = "installed version %s does not satisfy %s" % (installed, req.specifier)
        except Exception as e:
            problem = problem or "cannot read it: %s" % e
    out.append({"line": r["line"], "problem": problem})
print(json.dumps(out))
)PY";
    ProcessResult result;
    try {
      result = run_process({CORTEX_PYTHON3_EXECUTABLE, "-c", kCheck}, requirements.dump());
    } catch (const Error& e) {
      throw invalid_argument(file.string() + ": cannot check it with " + CORTEX_PYTHON3_EXECUTABLE + ": " +
                             e.what());
    }
    auto checked = nlohmann::json::parse(result.out, nullptr, false);
    if (result.exit_code != 0 || !checked.is_array() || checked.size() != requirements.size())
      throw invalid_argument(file.string() + ": cannot check it with " + CORTEX_PYTHON3_EXECUTABLE + ": " +
                             result.err);
    for (size_t i = 0; i < checked.size(); ++i) {
      if (checked[i]["problem"].is_null()) continue;
      const auto& r = requirements[i];
      errors.push_back(file.string() + ":" + std::to_string(r["line"].get<int>()) + ": " +
                       r["name"].get<std::string>() + ": " + checked[i]["problem"].get<std::string>() +
                       " for " + CORTEX_PYTHON3_EXECUTABLE);
    }
  }
  if (errors.empty()) return;
  std::string message;
  for (const auto& e : errors) message += (message.empty() ? "" : "\n") + e;
  throw invalid_argument(
      message +
      "\nrequest handlers use the system's Python packages and nothing is downloaded: install "
      "them (for example with apt-get install python3-NAME), then deploy again");
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
    check_requirements(spec.project_dir);
    // Remote models are fetched by the operator with this shell's AWS_*/HF_* settings.
    for (auto& api : spec.apis)
      if (storage::is_remote_model(api.model)) api.model_env = storage::ModelEnvironment::capture();
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
