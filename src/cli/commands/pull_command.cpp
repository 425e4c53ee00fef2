// cortex pull URI: download a model into the cache ($CORTEX_HOME/cache) ahead of time, with a progress
// bar, and print where it is. Later commands and deploys naming the same URI use the cached copy.
#include <iostream>

#include "cli/commands/commands.h"
#include "cli/progress_bar.h"
#include "storage/model_uri.h"
#include "util/error.h"

namespace cortex::cli {

void add_pull_command(CLI::App& app) {
  struct Options {
    std::string uri, endpoint, region;
  };
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("pull", "Download a model (s3://, https://, hf://) into the cache; print its path");
  cmd->add_option("uri", o->uri, "Model URI")->required();
  cmd->add_option("--endpoint", o->endpoint, "S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)");
  cmd->add_option("--region", o->region, "S3 region (default: AWS_REGION, the profile's, else us-east-1)");
  cmd->callback([o] {
    if (!storage::is_remote_model(o->uri))
      throw invalid_argument("'" + o->uri + "' is local; pull takes s3://, http://, https:// or hf:// URIs");
    std::cout << local_model_path(o->uri, o->endpoint, o->region) << "\n";
  });
}

}  // namespace cortex::cli
