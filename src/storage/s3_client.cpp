#include "storage/s3_client.h"

#include <tinyxml2.h>

#include <cstdlib>

#include "storage/sigv4.h"
#include "util/error.h"

namespace cortex::storage {

namespace {

std::string unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

const char* child_text(const tinyxml2::XMLElement* e, const char* name) {
  const auto* c = e ? e->FirstChildElement(name) : nullptr;
  return c && c->GetText() ? c->GetText() : "";
}

}  // namespace

HttpRequest S3Client::request(const std::string& method, const std::string& bucket, const std::string& key,
                              const std::map<std::string, std::string>& query,
                              const std::map<std::string, std::string>& signed_headers) const {
  std::string scheme_host, path;
  const std::string encoded_key = key.empty() ? "" : "/" + uri_encode(key, false);
  const bool path_style = settings_.path_style || bucket.find('.') != std::string::npos;
  if (!settings_.endpoint.empty()) {
    scheme_host = settings_.endpoint;
  } else {
    scheme_host = "https://s3." + settings_.region + ".amazonaws.com";
  }
  const size_t sep = scheme_host.find("://");
  std::string scheme = sep == std::string::npos ? "https" : scheme_host.substr(0, sep);
  std::string host = sep == std::string::npos ? scheme_host : scheme_host.substr(sep + 3);
  std::string base_path;
  if (auto slash = host.find('/'); slash != std::string::npos) {  // an endpoint with a path prefix
    base_path = host.substr(slash);
    host = host.substr(0, slash);
  }
  if (path_style) {
    path = base_path + "/" + uri_encode(bucket, true) + encoded_key;
  } else {
    host = bucket + "." + host;
    path = base_path + (encoded_key.empty() ? "/" : encoded_key);
  }

  SigV4Request sr;
  sr.method = method;
  sr.host = host;
  sr.path = path;
  sr.query = query;
  sr.headers = signed_headers;
  sr.region = settings_.region;
  HttpRequest r;
  r.method = method;
  r.url = scheme + "://" + host + path;
  if (!query.empty()) r.url += "?" + canonical_query(query);
  for (const auto& [k, v] : sign_v4(sr, settings_.credentials))
    if (k != "host") r.headers[k] = v;
  return r;
}

std::string S3Client::describe_error(const HttpResponse& r, const std::string& what) const {
  tinyxml2::XMLDocument doc;
  std::string code, message;
  if (doc.Parse(r.body.data(), r.body.size()) == tinyxml2::XML_SUCCESS && doc.RootElement()) {
    code = child_text(doc.RootElement(), "Code");
    message = child_text(doc.RootElement(), "Message");
  }
  std::string out = what + ": HTTP " + std::to_string(r.status);
  if (!code.empty()) out += " " + code;
  if (!message.empty()) out += " (" + message + ")";
  if (r.status == 403) {
    out = "access denied: " + out + "; credentials: " + settings_.credentials.source;
    if (code == "SignatureDoesNotMatch") out += " (is the secret key right?)";
  }
  return out;
}

std::vector<S3Object> S3Client::list(const std::string& bucket, const std::string& prefix,
                                     const std::atomic<bool>* cancel) const {
  std::vector<S3Object> objects;
  std::string token;
  const std::string where = "s3://" + bucket + "/" + prefix;
  for (;;) {
    std::map<std::string, std::string> query{{"list-type", "2"}, {"prefix", prefix}};
    if (!token.empty()) query["continuation-token"] = token;
    HttpResponse r = http_fetch(request("GET", bucket, "", query, {}), cancel);
    if (r.status == 404) throw not_found(describe_error(r, "no such bucket: s3://" + bucket));
    if (r.status == 403) throw invalid_argument(describe_error(r, "listing " + where));
    if (r.status != 200) throw Error(ErrorCode::kInternal, describe_error(r, "listing " + where));
    tinyxml2::XMLDocument doc;
    if (doc.Parse(r.body.data(), r.body.size()) != tinyxml2::XML_SUCCESS || !doc.RootElement())
      throw corrupt_data("listing " + where + ": the answer is not XML");
    const auto* root = doc.RootElement();
    for (const auto* c = root->FirstChildElement("Contents"); c; c = c->NextSiblingElement("Contents")) {
      S3Object o;
      o.key = child_text(c, "Key");
      o.size = std::strtoull(child_text(c, "Size"), nullptr, 10);
      o.etag = unquote(child_text(c, "ETag"));
      objects.push_back(std::move(o));
    }
    if (std::string(child_text(root, "IsTruncated")) != "true") break;
    token = child_text(root, "NextContinuationToken");
    if (token.empty()) throw corrupt_data("listing " + where + ": truncated without a continuation token");
  }
  return objects;
}

std::optional<S3Object> S3Client::head(const std::string& bucket, const std::string& key,
                                       const std::atomic<bool>* cancel) const {
  HttpResponse r = http_fetch(request("HEAD", bucket, key, {}, {}), cancel);
  if (r.status == 404) return std::nullopt;
  const std::string where = "s3://" + bucket + "/" + key;
  if (r.status == 403) throw invalid_argument(describe_error(r, where));
  if (r.status != 200) throw Error(ErrorCode::kInternal, describe_error(r, where));
  S3Object o;
  o.key = key;
  o.size = std::strtoull(r.header("content-length").c_str(), nullptr, 10);
  o.etag = unquote(r.header("etag"));
  return o;
}

HttpRequest S3Client::get(const std::string& bucket, const std::string& key, uint64_t begin,
                          uint64_t end) const {
  std::map<std::string, std::string> extra;
  if (const std::string range = range_header(begin, end); !range.empty()) extra["range"] = range;
  return request("GET", bucket, key, {}, extra);
}

}  // namespace cortex::storage
