// cortex predict API FILE.json: sends a request to an API through the gateway and prints the answer.
#include <cstdlib>
#include <iostream>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "control/http_client.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::cli {

void add_predict_command(CLI::App& app) {
  struct Options {
    std::string api;
    std::string file;
    std::string api_key;
  };
  auto o = std::make_shared<Options>();
  auto* predict =
      app.add_subcommand("predict", "Send a JSON request (the seed's {\"samples\": [...]}) to an API");
  predict->add_option("api", o->api, "API name")->required();
  predict->add_option("file", o->file, "JSON file with the request body")->required();
  predict->add_option("--api-key", o->api_key, "The API's key ($CORTEX_API_KEY)")->envname("CORTEX_API_KEY");
  predict->callback([o] {
    std::string body = read_file(o->file);
    auto api = operator_client(false).get("/v1/apis/" + o->api);
    control::HttpCall call;
    call.method = "POST";
    call.url = api["endpoint"].get<std::string>();
    call.body = body;
    call.timeout = std::chrono::milliseconds(600'000);
    if (!o->api_key.empty()) call.headers["Authorization"] = "Bearer " + o->api_key;
    control::HttpResponse r = control::http_call(call);
    if (r.status == 0)
      throw Error(ErrorCode::kInternal, "cannot reach the gateway at " + call.url + ": " + r.error);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    std::cout << (j.is_discarded() ? r.body : j.dump(2)) << "\n";
    if (!r.ok())
      throw Error(r.status < 500 ? ErrorCode::kInvalidArgument : ErrorCode::kInternal,
                  o->api + " answered " + std::to_string(r.status));
  });
}

}  // namespace cortex::cli
