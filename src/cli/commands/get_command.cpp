// cortex get [API] [--watch], cortex describe API: what runs and how it is doing.
#include <unistd.h>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "cli/table.h"
#include "util/error.h"

namespace cortex::cli {

using json = nlohmann::json;

namespace {

std::string latency_text(double seconds) {
  if (seconds <= 0) return "-";
  std::ostringstream s;
  if (seconds < 1)
    s << static_cast<int>(seconds * 1000 + 0.5) << "ms";
  else
    s << std::fixed << std::setprecision(1) << seconds << "s";
  return s.str();
}

std::string apis_table(const json& apis) {
  if (apis.empty()) return "no APIs are deployed (deploy one with `cortex deploy`)\n";
  std::vector<std::vector<std::string>> rows = {
      {"api", "status", "replicas", "up-to-date", "last update", "avg latency", "2XX", "4XX", "5XX"}};
  for (const auto& a : apis) {
    const auto& t = a["traffic"];
    std::string status = a["status"].get<std::string>();
    if (a.contains("model_download") && a["model_download"].is_object()) {
      const auto& d = a["model_download"];
      const double total = d["bytes_total"].get<double>();
      if (total > 0)
        status += " " + std::to_string(static_cast<int>(100 * d["bytes_done"].get<double>() / total)) + "%";
    }
    rows.push_back({a["name"].get<std::string>(), status,
                    std::to_string(a["ready"].get<int>()) + "/" + std::to_string(a["requested"].get<int>()),
                    std::to_string(a["up_to_date"].get<int>()), age_since(a["updated_at"].get<int64_t>()),
                    latency_text(t["avg_latency_seconds"].get<double>()),
                    std::to_string(t["2xx"].get<uint64_t>()), std::to_string(t["4xx"].get<uint64_t>()),
                    std::to_string(t["5xx"].get<uint64_t>())});
  }
  return render_table(rows);
}

std::string api_detail(const json& a, bool describe) {
  std::ostringstream out;
  out << apis_table(json::array({a})) << "\n";
  if (!a["reason"].get<std::string>().empty()) out << "reason: " << a["reason"].get<std::string>() << "\n\n";
  out << "endpoint: " << a["endpoint"].get<std::string>() << "\n";
  out << "example:  curl " << a["endpoint"].get<std::string>()
      << " -X POST -H \"Content-Type: application/json\""
      << (a["api_key_required"].get<bool>() ? " -H \"Authorization: Bearer $API_KEY\"" : "")
      << " -d '{\"samples\": [{\"text\": \"machine learning\"}]}'\n";
  out << "openai:   " << a["completions_endpoint"].get<std::string>() << " (model \""
      << a["name"].get<std::string>() << "\")\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"replica", "state", "up-to-date", "endpoint", "in flight", "age"}};
  for (const auto& r : a["replicas"]) {
    rows.push_back({r["id"].get<std::string>(), r["state"].get<std::string>(),
                    r["up_to_date"].get<bool>() ? "yes" : "no",
                    r["endpoint"].get<std::string>().empty() ? "-" : r["endpoint"].get<std::string>(),
                    std::to_string(r["outstanding"].get<int>()),
                    std::to_string(static_cast<int64_t>(r["age_seconds"].get<double>())) + "s"});
  }
  out << render_table(rows);
  if (a.contains("signature") && a["signature"].is_object()) {
    out << "\nmodel signature:\n";
    for (const char* side : {"inputs", "outputs"}) {
      if (!a["signature"].contains(side)) continue;
      for (const auto& [name, t] : a["signature"][side].items())
        out << "  " << side << "." << name << ": " << t.value("type", std::string("?")) << " "
            << t.value("shape", nlohmann::json::array()).dump() << "\n";
    }
  }
  if (!a["last_log_lines"].empty()) {
    out << "\nlast log lines of the replica that failed:\n";
    for (const auto& l : a["last_log_lines"]) out << "  " << l.get<std::string>() << "\n";
  }
  if (describe) {
    const auto& s = a["autoscaling"];
    out << "\nautoscaling: average in-flight " << s["avg_in_flight"].get<double>() << "; "
        << s["reason"].get<std::string>() << "\n";
    out << "\nevents:\n";
    for (const auto& e : a["events"])
      out << "  " << age_since(e["time"].get<int64_t>()) << " ago  " << e["message"].get<std::string>()
          << "\n";
    out << "\nspec (version " << a["version"] << ", deployment " << a["deployment"].get<std::string>()
        << ", project " << a["project_dir"].get<std::string>() << "):\n"
        << a["spec"].dump(2) << "\n";
  }
  return out.str();
}

}  // namespace

void add_get_commands(CLI::App& app) {
  struct Options {
    std::string api;
    bool watch = false;
    std::string output = "table";
  };
  auto o = std::make_shared<Options>();
  auto* get = app.add_subcommand("get", "Show the APIs (or one API) and how they are doing");
  get->add_option("api", o->api, "API name");
  get->add_flag("-w,--watch", o->watch, "Redraw every second until interrupted");
  get->add_option("-o,--output", o->output, "Output format: table, json, or name (API names, one per line)")
      ->check(CLI::IsMember({"table", "json", "name"}))
      ->capture_default_str();
  get->callback([o] {
    auto client = operator_client(false);
    if (!client.running()) {
      if (o->output == "json" && o->api.empty()) {
        std::cout << "[]\n";
        return;
      }
      if (o->output == "name") return;
      throw Error(ErrorCode::kNotFound, "no operator is running for " + client.home() +
                                            "; nothing is deployed (deploy with `cortex deploy`)");
    }
    auto render = [&] {
      if (o->output == "name") {
        std::string names;
        for (const auto& a : client.get("/v1/apis")) names += a["name"].get<std::string>() + "\n";
        return names;
      }
      if (o->output == "json")
        return (o->api.empty() ? client.get("/v1/apis") : client.get("/v1/apis/" + o->api)).dump(2) + "\n";
      return o->api.empty() ? apis_table(client.get("/v1/apis"))
                            : api_detail(client.get("/v1/apis/" + o->api), false);
    };
    if (!o->watch) {
      std::cout << render();
      return;
    }
    bool tty = ::isatty(1);
    for (;;) {
      std::string frame = render();
      if (tty) std::cout << "\033[H\033[2J";  // home, clear screen
      std::cout << frame;
      if (!tty) std::cout << "\n";
      std::cout.flush();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });

  auto* describe =
      app.add_subcommand("describe", "Everything about one API: replicas, autoscaling, events, spec");
  describe->add_option("api", o->api, "API name")->required();
  add_output_option(describe, o->output);
  describe->callback([o] {
    json a = operator_client(false).get("/v1/apis/" + o->api);
    std::cout << (o->output == "json" ? a.dump(2) + "\n" : api_detail(a, true));
  });
}

}  // namespace cortex::cli
