// --converted-cache: where weights converted on load are kept (see model/converted_weights_cache.h).
#include "cli/commands/commands.h"
#include "util/file_util.h"

namespace cortex::cli {

void add_converted_cache_option(CLI::App& cmd, std::string& value) {
  cmd.add_option("--converted-cache", value,
                 "Folder for weights converted on load (--dtype other than the file's), written once and "
                 "mapped by every process that runs the model in that type, so that they share its pages; "
                 "'off' converts in memory")
      ->capture_default_str();
}

std::string converted_cache_dir(const std::string& value) {
  return value == "off" ? "" : value;
}

std::string default_converted_cache_dir() {
  return cortex_home() + "/cache/converted";
}

}  // namespace cortex::cli
