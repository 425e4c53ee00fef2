// cortex.yaml: reads a project's config (a YAML list of resources: one `kind: deployment`, one or more
// `kind: api`), validates every field, fills the defaults and resolves paths against the project folder,
// giving the DeploymentSpec that everything after it acts on. docs/config.md is the user's reference.
// Validation collects every problem in the file, not just the first, each naming FILE:LINE, the field
// and what is allowed; a config with a problem gives no spec at all.
#pragma once

#include <string>
#include <vector>

#include "control/api_spec.h"
#include "util/error.h"

namespace cortex::control {

struct ConfigProblem {
  std::string file;
  int line = 0;       // 1-based; 0 when no line applies (an empty file)
  std::string field;  // "api 'generator' compute.min_replicas"; empty for the file as a whole
  std::string message;

  // "FILE:LINE: FIELD: MESSAGE", leaving out ":LINE" and "FIELD: " when they are unknown.
  std::string to_string() const;
};

// Error(kInvalidArgument) whose what() is every problem, one per line, in file order.
class ConfigError : public Error {
 public:
  explicit ConfigError(std::vector<ConfigProblem> problems);
  const std::vector<ConfigProblem>& problems() const { return problems_; }

 private:
  std::vector<ConfigProblem> problems_;
};

// Reads PATH: a cortex.yaml file, or a folder holding one. Messages name the file as PATH names it
// ("cortex.yaml" for the current folder). Throws Error(kNotFound) when there is no such file, ConfigError
// when it is not a valid config.
DeploymentSpec load_project_config(const std::string& path);

// The same from text; file_name is used only in messages, project_dir (made absolute) is where relative
// paths in the config are resolved and checked, and becomes DeploymentSpec::project_dir.
DeploymentSpec parse_project_config(const std::string& yaml_text, const std::string& file_name,
                                    const std::string& project_dir);

}  // namespace cortex::control
