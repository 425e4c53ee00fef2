#include "storage/aws_credentials.h"

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <map>

#include "util/error.h"

namespace cortex::storage {

namespace {

using IniFile = std::map<std::string, std::map<std::string, std::string>>;

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// The AWS files' INI dialect: [section], key = value, '#' or ';' comments.
IniFile read_ini(const std::string& path) {
  IniFile ini;
  std::ifstream in(path);
  std::string line, section;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      ini[section];
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string::npos || section.empty()) continue;
    ini[section][trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  return ini;
}

std::string home_file(const ModelEnvironment& env, const char* override_var, const char* name) {
  if (auto v = env.get(override_var); !v.empty()) return v;
  return env.get("HOME") + "/.aws/" + name;
}

const std::map<std::string, std::string>* section(const IniFile& ini, const std::string& name) {
  auto it = ini.find(name);
  return it == ini.end() ? nullptr : &it->second;
}

std::string value(const std::map<std::string, std::string>* s, const std::string& key) {
  if (!s) return "";
  auto it = s->find(key);
  return it == s->end() ? "" : it->second;
}

}  // namespace

S3Settings resolve_s3_settings(const std::string& endpoint, const std::string& region,
                               const ModelEnvironment& environment) {
  auto env = [&](const char* name) { return environment.get(name); };
  S3Settings s;
  std::string profile = env("AWS_PROFILE");
  if (profile.empty()) profile = env("AWS_DEFAULT_PROFILE");
  const bool profile_named = !profile.empty();
  if (!profile_named) profile = "default";

  const std::string credentials_path = home_file(environment, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
  const std::string config_path = home_file(environment, "AWS_CONFIG_FILE", "config");
  const IniFile credentials_file = read_ini(credentials_path);
  const IniFile config_file = read_ini(config_path);
  const auto* cred_section = section(credentials_file, profile);
  const auto* config_section = section(config_file, profile == "default" ? "default" : "profile " + profile);

  if (!env("AWS_ACCESS_KEY_ID").empty()) {
    s.credentials.access_key_id = env("AWS_ACCESS_KEY_ID");
    s.credentials.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
    s.credentials.session_token = env("AWS_SESSION_TOKEN");
    s.credentials.source = "environment (AWS_ACCESS_KEY_ID)";
    if (s.credentials.secret_access_key.empty())
      throw invalid_argument("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
  } else {
    for (const auto& [sec, path] :
         {std::pair{cred_section, credentials_path}, {config_section, config_path}}) {
      if (value(sec, "aws_access_key_id").empty()) continue;
      s.credentials.access_key_id = value(sec, "aws_access_key_id");
      s.credentials.secret_access_key = value(sec, "aws_secret_access_key");
      s.credentials.session_token = value(sec, "aws_session_token");
      s.credentials.source = "profile " + profile + " in " + path;
      break;
    }
    if (s.credentials.anonymous()) {
      if (profile_named && !cred_section && !config_section)
        throw not_found("AWS profile '" + profile + "' (AWS_PROFILE) is in neither " + credentials_path +
                        " nor " + config_path);
      s.credentials.source = "none (unsigned requests)";
    }
  }

  // The first setting that is given wins.
  auto first_given = [](std::initializer_list<std::string> candidates, const std::string& fallback) {
    for (const auto& c : candidates)
      if (!c.empty()) return c;
    return fallback;
  };
  s.region = first_given(
      {region, env("AWS_REGION"), env("AWS_DEFAULT_REGION"), value(config_section, "region")}, s.region);
  s.endpoint = first_given(
      {endpoint, env("AWS_ENDPOINT_URL_S3"), env("AWS_ENDPOINT_URL"), value(config_section, "endpoint_url")},
      "");
  while (!s.endpoint.empty() && s.endpoint.back() == '/') s.endpoint.pop_back();
  s.path_style = !s.endpoint.empty();
  return s;
}

}  // namespace cortex::storage
