#include "control/config_parser.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "control/quantity.h"
#include "storage/model_uri.h"
#include "util/error.h"

namespace cortex::control {

namespace fs = std::filesystem;

std::string ConfigProblem::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!field.empty()) out += field + ": ";
  return out + message;
}

namespace {

std::string join_problems(const std::vector<ConfigProblem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += '\n';
    out += p.to_string();
  }
  return out;
}

}  // namespace

ConfigError::ConfigError(std::vector<ConfigProblem> problems)
    : Error(ErrorCode::kInvalidArgument, join_problems(problems)), problems_(std::move(problems)) {}

namespace {

const std::vector<std::string> kKinds{"deployment", "api"};
const std::vector<std::string> kDeploymentFields{"kind", "name"};
const std::vector<std::string> kApiFields{"kind",
                                          "name",
                                          "model",
                                          "model_format",
                                          "model_endpoint",
                                          "model_region",
                                          "dtype",
                                          "request_handler",
                                          "compute",
                                          "autoscaling",
                                          "max_concurrency",
                                          "max_queue_length",
                                          "generation",
                                          "api_key",
                                          "api_key_env",
                                          "threads",
                                          "kv_cache_tokens",
                                          "kv_cache_dtype"};
const std::vector<std::string> kComputeFields{"min_replicas", "max_replicas", "init_replicas",
                                              "cpu",          "mem",          "gpu"};
const std::vector<std::string> kAutoscalingFields{"target_replica_concurrency",
                                                  "max_replica_concurrency",
                                                  "window",
                                                  "downscale_stabilization_period",
                                                  "upscale_stabilization_period",
                                                  "max_downscale_factor",
                                                  "max_upscale_factor",
                                                  "downscale_tolerance",
                                                  "upscale_tolerance"};
const std::vector<std::string> kGenerationFields{"max_tokens", "max_tokens_limit", "temperature", "top_k",
                                                 "top_p"};
const std::vector<std::string> kUriSchemes{"s3", "https", "http", "hf", "file"};

const std::string kModelAllowed =
    "a local path (relative to the project folder) or a URI: s3://, https://, http://, hf://, file://";
const std::string kFormatAllowed =
    "hf (a Hugging Face folder with config.json and model.safetensors) or gguf (a .gguf file)";
const std::string kNameAllowed =
    "a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, ending with a letter or "
    "digit, at most 63 characters";

std::string join(const std::vector<std::string>& items, const std::string& separator = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : separator) + s;
  return out;
}

bool contains(const std::vector<std::string>& items, const std::string& s) {
  return std::find(items.begin(), items.end(), s) != items.end();
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && lower(s.substr(s.size() - suffix.size())) == suffix;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The allowed word closest to `word` when it is close enough to be a likely typo, else "".
std::string closest(const std::string& word, const std::vector<std::string>& allowed) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  const std::string w = lower(word);
  for (const auto& a : allowed) {
    const size_t d = edit_distance(w, a);
    if (d < best_distance) {
      best_distance = d;
      best = a;
    }
  }
  const size_t limit = std::max<size_t>(1, std::min<size_t>(3, word.size() / 3));
  if (best_distance <= limit) return best;
  // An abbreviation or a longer spelling ("memory" for mem, "temp" for temperature).
  for (const auto& a : allowed)
    if (std::min(w.size(), a.size()) >= 3 && (w.rfind(a, 0) == 0 || a.rfind(w, 0) == 0)) return a;
  return "";
}

bool is_dns1035_label(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  if (s.front() < 'a' || s.front() > 'z') return false;
  if (s.back() == '-') return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

int line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
}

// A scalar the user quoted (or wrote as a block scalar or tagged !!str): a string whatever it holds.
bool is_quoted(const YAML::Node& node) {
  return node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str";
}

std::string shorten(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out.size() > 40 ? out.substr(0, 37) + "..." : out;
}

bool is_plain_integer(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

std::optional<double> plain_number(const std::string& s) {
  std::string_view text = s;
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty() ||
      !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-' || text[0] == '.'))
    return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

bool is_plain_boolean(const std::string& s) {
  static const std::vector<std::string> words{"true", "false", "yes", "no", "on", "off"};
  return contains(words, lower(s));
}

// What a value is, for "got ..." in messages.
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "an empty value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (!is_quoted(node)) {
        if (is_plain_integer(s)) return "integer " + s;
        if (plain_number(s)) return "number " + s;
        if (is_plain_boolean(s)) return "boolean " + s;
      }
      return "string '" + shorten(s) + "'";
    }
    default:
      return "nothing";
  }
}

using storage::percent_decode;

fs::path normal_absolute(const fs::path& p) {
  fs::path out = fs::absolute(p).lexically_normal();
  if (!out.has_filename() && out.has_parent_path() && out != out.root_path()) out = out.parent_path();
  return out;
}

// Up to five names in a folder, for messages.
std::string listing(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    names.push_back(it->path().filename().string() + (it->is_directory(ec) ? "/" : ""));
  if (names.empty()) return "it is empty";
  std::sort(names.begin(), names.end());
  const size_t total = names.size();
  if (total > 5) names.resize(5);
  return "it holds " + join(names) + (total > 5 ? " and " + std::to_string(total - 5) + " more" : "");
}

// One field as written: its key (where messages point) and its value.
struct Field {
  std::string path;  // the full field name in messages: "api 'generator' compute.min_replicas"
  YAML::Node key;
  YAML::Node value;
  int line() const { return line_of(key); }
};

// The fields of one mapping (a resource, or compute/autoscaling/generation), first occurrence of each.
struct Block {
  std::string prefix;  // "api 'generator' compute." : prepended to field names in messages
  int line = 0;        // where the mapping starts
  std::map<std::string, Field> fields;

  // The field when it is written with a value (an empty value counts as not written).
  const Field* get(const std::string& name) const {
    auto it = fields.find(name);
    return it == fields.end() || it->second.value.IsNull() ? nullptr : &it->second;
  }
  std::string path(const std::string& name) const { return prefix + name; }
};

// "max_replicas (2)" or "max_replicas (100, the default)", for messages that compare two fields.
template <class T>
std::string other(const std::string& name, T value, bool given) {
  std::ostringstream s;
  s << name << " (" << value << (given ? "" : ", the default") << ")";
  return s.str();
}

class Parser {
 public:
  Parser(std::string file, fs::path project_dir)
      : file_(std::move(file)), project_dir_(std::move(project_dir)) {}

  DeploymentSpec parse(const std::string& text);

 private:
  void add(int line, const std::string& field, const std::string& message) {
    problems_.push_back(ConfigProblem{file_, line, field, message});
  }
  void add(const Field& f, const std::string& message) { add(f.line(), f.path, message); }
  // Throws every problem found, in file order.
  [[noreturn]] void fail() {
    std::stable_sort(problems_.begin(), problems_.end(),
                     [](const ConfigProblem& a, const ConfigProblem& b) { return a.line < b.line; });
    throw ConfigError(problems_);
  }

  // Checks that `node` is a mapping of known fields, reporting unknown and repeated ones.
  std::optional<Block> open_block(const YAML::Node& node, const std::string& prefix, int line,
                                  const std::vector<std::string>& allowed,
                                  const std::map<std::string, std::string>& elsewhere = {});
  // A nested block (compute:, ...) of `parent`: nullopt when absent, empty or not a mapping.
  std::optional<Block> sub_block(const Block& parent, const std::string& name,
                                 const std::vector<std::string>& allowed);

  std::optional<std::string> string(const Field* f, bool allow_empty = false);
  std::optional<int64_t> integer(const Block& b, const std::string& name, int64_t min, int64_t max);
  std::optional<double> number(const Block& b, const std::string& name, const std::function<bool(double)>& ok,
                               const std::string& allowed);
  std::optional<std::chrono::milliseconds> duration(const Block& b, const std::string& name, bool positive);
  // A field that failed to parse: its value must not be used in checks against other fields.
  bool bad(const Block& b, const std::string& name, bool parsed) const { return b.get(name) && !parsed; }

  void parse_deployment(const YAML::Node& node, const std::string& label, DeploymentSpec& spec);
  std::optional<ApiSpec> parse_api(const YAML::Node& node, const std::string& label);
  void parse_compute(const Block& api_block, ComputeSpec& c);
  void parse_autoscaling(const Block& api_block, std::optional<int64_t> max_concurrency, AutoscalingSpec& a);
  void parse_generation(const Block& api_block, GenerationSpec& g);
  void resolve_model(const Block& b, ApiSpec& api);
  std::optional<fs::path> local_file(const Field& f, const std::string& text);

  std::string file_;
  fs::path project_dir_;
  std::vector<ConfigProblem> problems_;
};

std::optional<Block> Parser::open_block(const YAML::Node& node, const std::string& prefix, int line,
                                        const std::vector<std::string>& allowed,
                                        const std::map<std::string, std::string>& elsewhere) {
  if (!node.IsMap()) return std::nullopt;
  Block b;
  b.prefix = prefix;
  b.line = line;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      add(line_of(key), prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1),
          "keys must be field names, got " + describe(key));
      continue;
    }
    const std::string name = key.Scalar();
    Field f{prefix + name, key, it->second};
    if (!contains(allowed, name)) {
      std::string message = "unknown field '" + name + "'";
      auto home = elsewhere.find(name);
      if (home != elsewhere.end()) {
        message += " (it belongs under " + home->second + ": " + home->second + "." + name + ")";
      } else if (std::string near = closest(name, allowed); !near.empty()) {
        message += " (did you mean '" + near + "'?)";
      }
      add(f, message + "; allowed: " + join(allowed));
      continue;
    }
    auto [existing, inserted] = b.fields.emplace(name, f);
    if (!inserted)
      add(f, "given twice (first at line " + std::to_string(existing->second.line()) + "); keep one");
  }
  return b;
}

std::optional<Block> Parser::sub_block(const Block& parent, const std::string& name,
                                       const std::vector<std::string>& allowed) {
  const Field* f = parent.get(name);
  if (!f) return std::nullopt;
  if (!f->value.IsMap()) {
    add(*f, "must be a mapping of " + join(allowed) + ", got " + describe(f->value));
    return std::nullopt;
  }
  return open_block(f->value, f->path + ".", f->line(), allowed);
}

std::optional<std::string> Parser::string(const Field* f, bool allow_empty) {
  if (!f) return std::nullopt;
  if (!f->value.IsScalar()) {
    add(*f, "must be a string, got " + describe(f->value));
    return std::nullopt;
  }
  if (!allow_empty && f->value.Scalar().empty()) {
    add(*f, "must not be empty");
    return std::nullopt;
  }
  return f->value.Scalar();
}

std::optional<int64_t> Parser::integer(const Block& b, const std::string& name, int64_t min, int64_t max) {
  const Field* f = b.get(name);
  if (!f) return std::nullopt;
  const YAML::Node& v = f->value;
  if (!v.IsScalar() || is_quoted(v) || !is_plain_integer(v.Scalar())) {
    add(*f, "must be an integer, got " + describe(v));
    return std::nullopt;
  }
  std::string_view text = v.Scalar();
  if (text[0] == '+') text.remove_prefix(1);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const bool unbounded = max == std::numeric_limits<int>::max();
  if (ec != std::errc() || value < min || value > max) {
    std::string allowed = "must be between " + std::to_string(min) + " and " + std::to_string(max);
    if (unbounded)
      allowed = (ec == std::errc() ? value < min : text[0] == '-') ? "must be >= " + std::to_string(min)
                                                                   : "must be at most " + std::to_string(max);
    add(*f, allowed + ", got " + v.Scalar());
    return std::nullopt;
  }
  return value;
}

std::optional<double> Parser::number(const Block& b, const std::string& name,
                                     const std::function<bool(double)>& ok, const std::string& allowed) {
  const Field* f = b.get(name);
  if (!f) return std::nullopt;
  const YAML::Node& v = f->value;
  std::optional<double> value;
  if (v.IsScalar() && !is_quoted(v)) value = plain_number(v.Scalar());
  if (!value) {
    add(*f, "must be a number, got " + describe(v));
    return std::nullopt;
  }
  if (!ok(*value)) {
    add(*f, allowed + ", got " + v.Scalar());
    return std::nullopt;
  }
  return value;
}

std::optional<std::chrono::milliseconds> Parser::duration(const Block& b, const std::string& name,
                                                          bool positive) {
  const Field* f = b.get(name);
  if (!f) return std::nullopt;
  if (!f->value.IsScalar()) {
    add(*f, "must be a duration like 60s, 5m, 500ms or 1m30s, got " + describe(f->value));
    return std::nullopt;
  }
  try {
    const auto d = parse_duration(f->value.Scalar());
    if (positive && d.count() == 0) {
      add(*f, "must be longer than 0s, got " + f->value.Scalar());
      return std::nullopt;
    }
    return d;
  } catch (const Error& e) {
    add(*f, e.what());
    return std::nullopt;
  }
}

void Parser::parse_deployment(const YAML::Node& node, const std::string& label, DeploymentSpec& spec) {
  auto b = open_block(node, label + " ", line_of(node), kDeploymentFields);
  if (!b) return;
  const Field* name = b->get("name");
  if (!name) {
    add(b->fields.count("name") ? b->fields.at("name").line() : b->line, b->path("name"),
        "required; " + kNameAllowed);
  } else if (auto s = string(name, true)) {
    if (!is_dns1035_label(*s))
      add(*name, "must be " + kNameAllowed + ", got '" + shorten(*s) + "'");
    else
      spec.name = *s;
  }
}

void Parser::parse_compute(const Block& api_block, ComputeSpec& c) {
  auto b = sub_block(api_block, "compute", kComputeFields);
  if (!b) return;
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const auto min = integer(*b, "min_replicas", 1, kIntMax);
  const auto max = integer(*b, "max_replicas", 1, kIntMax);
  const auto init = integer(*b, "init_replicas", 1, kIntMax);
  if (min) c.min_replicas = static_cast<int>(*min);
  if (max) c.max_replicas = static_cast<int>(*max);
  const bool bounds_ok =
      !bad(*b, "min_replicas", min.has_value()) && !bad(*b, "max_replicas", max.has_value());
  if (bounds_ok && c.min_replicas > c.max_replicas) {
    add(*b->get("min_replicas"), "must be <= " + other("max_replicas", c.max_replicas, max.has_value()) +
                                     ", got " + std::to_string(c.min_replicas));
  }
  c.init_replicas = c.min_replicas;
  if (init) {
    c.init_replicas = static_cast<int>(*init);
    if (bounds_ok && (*init < c.min_replicas || *init > c.max_replicas)) {
      add(*b->get("init_replicas"),
          "must be between " + other("min_replicas", c.min_replicas, min.has_value()) + " and " +
              other("max_replicas", c.max_replicas, max.has_value()) + ", got " + std::to_string(*init));
    }
  }
  if (const Field* f = b->get("cpu")) {
    if (!f->value.IsScalar()) {
      add(*f, "must be a CPU quantity like 1, 0.5 or 500m, got " + describe(f->value));
    } else {
      try {
        c.cpu_millis = parse_cpu_quantity(f->value.Scalar());
      } catch (const Error& e) {
        add(*f, e.what());
      }
    }
  }
  if (const Field* f = b->get("mem")) {
    if (!f->value.IsScalar()) {
      add(*f, "must be a memory quantity like 2Gi, 512Mi or 1G, got " + describe(f->value));
    } else {
      try {
        c.mem_bytes = parse_memory_quantity(f->value.Scalar());
      } catch (const Error& e) {
        add(*f, e.what());
      }
    }
  }
  if (auto gpu = integer(*b, "gpu", 0, kIntMax)) c.gpu = static_cast<int>(*gpu);
}

void Parser::parse_autoscaling(const Block& api_block, std::optional<int64_t> max_concurrency,
                               AutoscalingSpec& a) {
  // target_replica_concurrency defaults to max_concurrency: check that default even without the block.
  std::optional<Block> b = sub_block(api_block, "autoscaling", kAutoscalingFields);
  const bool block_given = b.has_value();
  if (!b) b = Block{api_block.prefix + "autoscaling.", api_block.line, {}};

  const auto target = number(
      *b, "target_replica_concurrency", [](double v) { return v > 0; }, "must be > 0");
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const auto max_rc = integer(*b, "max_replica_concurrency", 1, kIntMax);
  if (max_rc) a.max_replica_concurrency = static_cast<int>(*max_rc);
  const bool concurrency_bad = bad(api_block, "max_concurrency", max_concurrency.has_value());
  const bool target_ok =
      !bad(*b, "target_replica_concurrency", target.has_value()) && (target.has_value() || !concurrency_bad);
  a.target_replica_concurrency = target ? *target : static_cast<double>(max_concurrency.value_or(32));
  if (target_ok && !bad(*b, "max_replica_concurrency", max_rc.has_value()) &&
      a.target_replica_concurrency > a.max_replica_concurrency) {
    std::ostringstream t;
    t << a.target_replica_concurrency;
    if (target) {
      add(*b->get("target_replica_concurrency"),
          "must be <= " + other("max_replica_concurrency", a.max_replica_concurrency, max_rc.has_value()) +
              ", got " + t.str());
    } else if (max_rc) {
      add(*b->get("max_replica_concurrency"), "must be >= target_replica_concurrency (" + t.str() +
                                                  ", which defaults to max_concurrency), got " +
                                                  std::to_string(*max_rc));
    } else {
      add(*api_block.get("max_concurrency"),
          "is also the default autoscaling.target_replica_concurrency, which must be <= "
          "autoscaling.max_replica_concurrency (" +
              std::to_string(a.max_replica_concurrency) + ", the default), got " + t.str() +
              "; set autoscaling.target_replica_concurrency or autoscaling.max_replica_concurrency");
    }
  }
  if (!block_given) return;

  if (auto d = duration(*b, "window", true)) a.window = *d;
  if (auto d = duration(*b, "downscale_stabilization_period", false)) a.downscale_stabilization_period = *d;
  if (auto d = duration(*b, "upscale_stabilization_period", false)) a.upscale_stabilization_period = *d;
  if (auto v = number(
          *b, "max_downscale_factor", [](double v) { return v >= 0 && v < 1; }, "must be >= 0 and < 1"))
    a.max_downscale_factor = *v;
  if (auto v = number(
          *b, "max_upscale_factor", [](double v) { return v > 1; }, "must be > 1"))
    a.max_upscale_factor = *v;
  if (auto v = number(
          *b, "downscale_tolerance", [](double v) { return v >= 0; }, "must be >= 0"))
    a.downscale_tolerance = *v;
  if (auto v = number(
          *b, "upscale_tolerance", [](double v) { return v >= 0; }, "must be >= 0"))
    a.upscale_tolerance = *v;
}

void Parser::parse_generation(const Block& api_block, GenerationSpec& g) {
  auto b = sub_block(api_block, "generation", kGenerationFields);
  if (!b) return;
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const auto max_tokens = integer(*b, "max_tokens", 0, kIntMax);
  const auto limit = integer(*b, "max_tokens_limit", 1, kIntMax);
  if (max_tokens) g.max_tokens = static_cast<int>(*max_tokens);
  if (limit) g.max_tokens_limit = static_cast<int>(*limit);
  if (!bad(*b, "max_tokens", max_tokens.has_value()) && !bad(*b, "max_tokens_limit", limit.has_value()) &&
      g.max_tokens > g.max_tokens_limit) {
    if (max_tokens)
      add(*b->get("max_tokens"),
          "must be <= " + other("max_tokens_limit", g.max_tokens_limit, limit.has_value()) + ", got " +
              std::to_string(g.max_tokens));
    else
      add(*b->get("max_tokens_limit"), "must be >= " + other("max_tokens", g.max_tokens, false) + ", got " +
                                           std::to_string(g.max_tokens_limit));
  }
  if (auto v = number(
          *b, "temperature", [](double v) { return v >= 0 && v <= 100; }, "must be between 0 and 100"))
    g.temperature = *v;
  if (auto v = integer(*b, "top_k", 0, 1'000'000)) g.top_k = static_cast<int>(*v);
  if (auto v = number(
          *b, "top_p", [](double v) { return v > 0 && v <= 1; }, "must be > 0 and <= 1"))
    g.top_p = *v;
}

// A path to something in the project (a relative one is under the project folder), which must exist.
std::optional<fs::path> Parser::local_file(const Field& f, const std::string& text) {
  const fs::path path = normal_absolute(project_dir_ / fs::path(text));
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    std::string message = "'" + text + "' does not exist (looked for " + path.string() + ")";
    if (!text.empty() && text[0] == '~')
      message += "; '~' is not expanded: write the path absolute or relative";
    add(f, message);
    return std::nullopt;
  }
  return path;
}

void Parser::resolve_model(const Block& b, ApiSpec& api) {
  std::optional<std::string> format;
  const Field* format_field = b.get("model_format");
  if (auto s = string(format_field, true)) {
    if (*s == "hf" || *s == "gguf")
      format = *s;
    else
      add(*format_field, "must be " + kFormatAllowed + ", got '" + shorten(*s) + "'");
  }

  const Field* f = b.get("model");
  if (!f) {
    add(b.fields.count("model") ? b.fields.at("model").line() : b.line, b.path("model"),
        "required; " + kModelAllowed);
    return;
  }
  auto text = string(f);
  if (!text) return;

  std::string local = *text;
  const size_t sep = text->find("://");
  if (sep != std::string::npos && sep > 0) {
    const std::string scheme = lower(text->substr(0, sep));
    const std::string rest = text->substr(sep + 3);
    if (!contains(kUriSchemes, scheme)) {
      add(*f, "unsupported URI scheme '" + scheme + "://'; model must be " + kModelAllowed);
      return;
    }
    if (scheme != "file") {
      if (rest.empty() || rest[0] == '/') {
        add(*f, "'" + *text + "' names no location after " + scheme + ":// (e.g. " +
                    (scheme == "s3" ? "s3://bucket/path/to/model" : scheme + "://host/path/to/model") + ")");
        return;
      }
      try {
        storage::parse_model_uri(*text);
      } catch (const Error& e) {
        add(*f, std::string(e.what()).substr(std::string("model: ").size()));
        return;
      }
      api.model = *text;
      const std::string location = rest.substr(0, rest.find_first_of("?#"));
      api.model_format = format ? *format : ends_with_ci(location, ".gguf") ? "gguf" : "hf";
      return;
    }
    local = rest.rfind("localhost/", 0) == 0 ? rest.substr(9) : rest;
    if (local.empty() || local[0] != '/') {
      add(*f,
          "a file:// URI needs an absolute path (file:///path/to/model); for a path relative to the project "
          "folder leave out file://");
      return;
    }
    local = percent_decode(local);
  }

  auto path = local_file(*f, local);
  if (!path) return;
  api.model = path->string();
  std::error_code ec;
  const bool is_dir = fs::is_directory(*path, ec);
  if (format) {
    if (*format == "hf" && !is_dir)
      add(*format_field,
          "is hf (a Hugging Face model folder), but model " + path->string() + " is not a folder");
    else if (*format == "gguf" && !fs::is_regular_file(*path, ec))
      add(*format_field, "is gguf (a .gguf file), but model " + path->string() + " is not a file");
    else
      api.model_format = *format;
    return;
  }
  if (format_field) return;  // given but invalid: already reported
  if (is_dir) {
    const bool config = fs::is_regular_file(*path / "config.json", ec);
    const bool weights = fs::is_regular_file(*path / "model.safetensors", ec);
    if (config && weights) {
      api.model_format = "hf";
      return;
    }
    std::string missing = !config && !weights ? "config.json and model.safetensors"
                          : !config           ? "config.json"
                                              : "model.safetensors";
    add(*f, "cannot tell the model format: " + path->string() + " is a folder without " + missing +
                " (a Hugging Face model folder has both; " + listing(*path) + "); point model at " +
                kFormatAllowed);
    return;
  }
  if (ends_with_ci(path->string(), ".gguf")) {
    api.model_format = "gguf";
    return;
  }
  add(*f, "cannot tell the model format: " + path->string() +
              " is a file without the .gguf suffix; point "
              "model at " +
              kFormatAllowed + ", or set model_format");
}

std::optional<ApiSpec> Parser::parse_api(const YAML::Node& node, const std::string& label) {
  std::map<std::string, std::string> elsewhere;
  for (const auto& name : kComputeFields) elsewhere[name] = "compute";
  for (const auto& name : kAutoscalingFields) elsewhere[name] = "autoscaling";
  for (const auto& name : kGenerationFields) elsewhere[name] = "generation";
  auto b = open_block(node, label + " ", line_of(node), kApiFields, elsewhere);
  if (!b) return std::nullopt;

  ApiSpec api;
  const Field* name = b->get("name");
  if (!name) {
    add(b->fields.count("name") ? b->fields.at("name").line() : b->line, b->path("name"),
        "required; " + kNameAllowed);
  } else if (auto s = string(name, true)) {
    if (!is_dns1035_label(*s))
      add(*name, "must be " + kNameAllowed + ", got '" + shorten(*s) + "'");
    else
      api.name = *s;
  }

  resolve_model(*b, api);
  const bool s3_model = storage::is_remote_model(api.model) &&
                        storage::parse_model_uri(api.model).scheme == storage::UriScheme::kS3;
  if (auto endpoint = string(b->get("model_endpoint"))) {
    const Field& f = *b->get("model_endpoint");
    if (endpoint->rfind("http://", 0) != 0 && endpoint->rfind("https://", 0) != 0)
      add(f,
          "must be an http:// or https:// URL of an S3-compatible store, got '" + shorten(*endpoint) + "'");
    else if (!api.model.empty() && !s3_model)
      add(f, "applies to s3:// models only (model is " + api.model + ")");
    else
      api.model_endpoint = *endpoint;
  }
  if (auto region = string(b->get("model_region"))) {
    const Field& f = *b->get("model_region");
    if (!api.model.empty() && !s3_model)
      add(f, "applies to s3:// models only (model is " + api.model + ")");
    else
      api.model_region = *region;
  }
  if (auto dtype = string(b->get("dtype"))) {
    if (*dtype == "f32" || *dtype == "f16" || *dtype == "q8_0")
      api.dtype = *dtype;
    else
      add(*b->get("dtype"), "must be f32, f16 or q8_0, got '" + shorten(*dtype) + "'");
  }

  if (auto handler = string(b->get("request_handler"))) {
    const Field& f = *b->get("request_handler");
    if (handler->find("://") != std::string::npos) {
      add(f, "must be a file in the project (a path relative to the project folder), got '" +
                 shorten(*handler) + "'");
    } else if (auto path = local_file(f, *handler)) {
      std::error_code ec;
      if (!fs::is_regular_file(*path, ec))
        add(f, path->string() + " is not a file; request_handler is a Python file such as handler.py");
      else
        api.request_handler = path->string();
    }
  }

  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const auto max_concurrency = integer(*b, "max_concurrency", 1, kIntMax);
  if (max_concurrency) api.max_concurrency = static_cast<int>(*max_concurrency);
  if (auto v = integer(*b, "max_queue_length", 0, kIntMax)) api.max_queue_length = static_cast<int>(*v);
  if (auto v = integer(*b, "threads", 0, kIntMax)) api.threads = static_cast<int>(*v);
  if (auto v = integer(*b, "kv_cache_tokens", 0, kIntMax)) api.kv_cache_tokens = static_cast<int>(*v);
  if (auto kv = string(b->get("kv_cache_dtype"))) {
    if (*kv == "f32" || *kv == "f16")
      api.kv_cache_dtype = *kv;
    else
      add(*b->get("kv_cache_dtype"), "must be f32 or f16, got '" + shorten(*kv) + "'");
  }

  parse_compute(*b, api.compute);
  parse_autoscaling(*b, max_concurrency, api.autoscaling);
  parse_generation(*b, api.generation);

  // The key is never echoed: messages end up in logs.
  const std::string key_allowed =
      "printable ASCII without spaces (clients send it as 'Authorization: Bearer KEY')";
  auto valid_key = [](const std::string& key) {
    return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 127; });
  };
  const Field* key = b->get("api_key");
  const Field* key_env = b->get("api_key_env");
  if (key && key_env) {
    add(*key_env, "give api_key or api_key_env, not both");
  } else if (key) {
    if (!key->value.IsScalar())
      add(*key, "must be a string, got " + describe(key->value));
    else if (!valid_key(key->value.Scalar()))
      add(*key, "must be " + key_allowed);
    else
      api.api_key = key->value.Scalar();
  } else if (auto env = string(key_env)) {
    const bool valid_name =
        std::all_of(env->begin(), env->end(),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }) &&
        !std::isdigit(static_cast<unsigned char>((*env)[0]));
    const char* value = valid_name ? std::getenv(env->c_str()) : nullptr;
    if (!valid_name)
      add(*key_env,
          "must be the name of an environment variable (letters, digits, '_'), got '" + shorten(*env) + "'");
    else if (!value || !*value)
      add(*key_env, "environment variable " + *env + " is not set (it holds the API key)");
    else if (!valid_key(value))
      add(*key_env, "environment variable " + *env + " must hold " + key_allowed);
    else
      api.api_key = value;
  }
  return api;
}

DeploymentSpec Parser::parse(const std::string& text) {
  DeploymentSpec spec;
  spec.project_dir = project_dir_.string();
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    add(e.mark.is_null() ? 0 : e.mark.line + 1, "", "invalid YAML: " + e.msg);
    fail();
  }
  const std::string example = "- kind: deployment / name: ..., then - kind: api / name: ... / model: ...";
  if (documents.empty() || (documents.size() == 1 && documents[0].IsNull())) {
    add(0, "", "the file is empty; a cortex.yaml is a list of resources (" + example + ")");
    fail();
  }
  if (documents.size() > 1) {
    add(line_of(documents[1]), "",
        "holds " + std::to_string(documents.size()) +
            " YAML documents (separated by ---); a cortex.yaml is one list of resources");
  }
  const YAML::Node& root = documents[0];
  if (!root.IsSequence()) {
    add(line_of(root), "",
        "the top level must be a list of resources, each item starting with '- kind:' (deployment or api), "
        "got " +
            describe(root));
    fail();
  }

  int deployments = 0;
  int deployment_line = 0;
  std::map<std::string, int> api_lines;
  int index = 0;
  for (const YAML::Node& item : root) {
    ++index;
    const int line = line_of(item);
    std::string label = "item " + std::to_string(index);
    if (!item.IsMap()) {
      add(line, label,
          "each resource must be a mapping with kind: deployment or kind: api, got " + describe(item));
      continue;
    }
    const YAML::Node kind = item["kind"];
    const YAML::Node name = item["name"];
    if (!kind || kind.IsNull()) {
      add(line, label + " kind", "required; must be " + join(kKinds, " or "));
      continue;
    }
    if (!kind.IsScalar() || !contains(kKinds, kind.Scalar())) {
      std::string message = "must be " + join(kKinds, " or ") + ", got " + describe(kind);
      if (kind.IsScalar())
        if (std::string near = closest(kind.Scalar(), kKinds); !near.empty())
          message += "; did you mean '" + near + "'?";
      add(line_of(kind), label + " kind", message);
      continue;
    }
    const std::string k = kind.Scalar();
    if (name && name.IsScalar() && !name.Scalar().empty())
      label = k + " '" + shorten(name.Scalar()) + "'";
    else
      label += " (" + k + ")";

    if (k == "deployment") {
      ++deployments;
      if (deployments == 1) {
        deployment_line = line;
        parse_deployment(item, label, spec);
      } else {
        add(line, label,
            "a second deployment (the first is at line " + std::to_string(deployment_line) +
                "); a cortex.yaml has exactly one kind: deployment");
      }
      continue;
    }
    auto api = parse_api(item, label);
    if (!api || api->name.empty()) continue;
    auto [first, inserted] = api_lines.emplace(api->name, line_of(name));
    if (!inserted) {
      add(line_of(name), label + " name",
          "another api is named '" + api->name + "' (at line " + std::to_string(first->second) +
              "); api names must be unique");
      continue;
    }
    spec.apis.push_back(std::move(*api));
  }
  if (deployments == 0)
    add(line_of(root), "", "no kind: deployment resource; add one (- kind: deployment / name: NAME)");
  if (api_lines.empty() && problems_.empty())
    add(line_of(root), "",
        "no kind: api resource; add at least one (- kind: api / name: NAME / model: PATH)");
  if (!problems_.empty()) fail();
  return spec;
}

}  // namespace

DeploymentSpec parse_project_config(const std::string& yaml_text, const std::string& file_name,
                                    const std::string& project_dir) {
  Parser parser(file_name, normal_absolute(project_dir.empty() ? fs::path(".") : fs::path(project_dir)));
  return parser.parse(yaml_text);
}

DeploymentSpec load_project_config(const std::string& path) {
  fs::path file = path.empty() ? fs::path(".") : fs::path(path);
  std::error_code ec;
  if (fs::is_directory(file, ec)) {
    const fs::path folder = file;
    file /= "cortex.yaml";
    if (!fs::exists(file, ec)) {
      std::string message = "no cortex.yaml in " + folder.string();
      if (fs::exists(folder / "cortex.yml", ec))
        message += " (there is a cortex.yml: rename it to cortex.yaml)";
      throw not_found(message);
    }
  }
  const std::string shown = file.lexically_normal().string();
  if (!fs::exists(file, ec)) throw not_found(shown + ": no such file");
  if (fs::is_directory(file, ec)) throw not_found(shown + ": is a folder, not a cortex.yaml file");
  std::ifstream in(file, std::ios::binary);
  if (!in.is_open()) throw not_found(shown + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_project_config(text.str(), shown, normal_absolute(file).parent_path().string());
}

}  // namespace cortex::control
