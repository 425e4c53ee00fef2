#include "storage/http_transfer.h"

#include <curl/curl.h>

#include <mutex>

#include "util/error.h"

namespace cortex::storage {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  HttpResponse response;
  const std::function<void(long, const char*, size_t)>* sink = nullptr;
  const std::function<void(uint64_t)>* on_bytes = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  CURL* curl = nullptr;
  uint64_t received = 0;
  std::chrono::steady_clock::time_point last_report;
  std::string sink_error;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a redirect or a 100 Continue). The Hugging Face hub names a large file's
    // size and SHA-256 on the redirect (X-Linked-Size, X-Linked-Etag): those are kept.
    for (auto it = t->response.headers.begin(); it != t->response.headers.end();)
      it = it->first.rfind("x-linked-", 0) == 0 ? std::next(it) : t->response.headers.erase(it);
  } else if (auto colon = line.find(':'); colon != std::string::npos) {
    std::string value = line.substr(colon + 1);
    const size_t b = value.find_first_not_of(" \t");
    const size_t e = value.find_last_not_of(" \t\r\n");
    t->response.headers[lower(line.substr(0, colon))] =
        b == std::string::npos ? "" : value.substr(b, e - b + 1);
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  const size_t len = size * n;
  if (t->sink && status >= 200 && status < 300) {
    try {
      (*t->sink)(status, data, len);
    } catch (const std::exception& e) {
      t->sink_error = e.what();
      return 0;  // aborts the transfer
    }
    t->received += len;
  } else if (t->response.body.size() < (1 << 20)) {
    t->response.body.append(data, len);
  }
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->cancel && t->cancel->load()) return 1;
  auto now = std::chrono::steady_clock::now();
  if (t->on_bytes && *t->on_bytes && now - t->last_report >= std::chrono::milliseconds(100)) {
    t->last_report = now;
    (*t->on_bytes)(t->received);
  }
  return 0;
}

HttpResponse perform(const HttpRequest& request, Transfer& t) {
  global_init();
  CURL* curl = curl_easy_init();
  if (!curl) throw Error(ErrorCode::kInternal, "cannot create an HTTP handle");
  t.curl = curl;
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) headers = curl_slist_append(headers, (k + ": " + v).c_str());
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  if (request.method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count() * 1000));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(request.stall_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "cortex");
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &t.response.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc == CURLE_ABORTED_BY_CALLBACK) throw Error(ErrorCode::kInternal, request.url + ": cancelled");
  if (rc == CURLE_WRITE_ERROR && !t.sink_error.empty())
    throw Error(ErrorCode::kInternal, request.url + ": " + t.sink_error);
  if (rc != CURLE_OK) {
    std::string what = error[0] ? error : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT && t.response.status != 0)
      what = "no data for " + std::to_string(request.stall_timeout.count()) + " s (" + what + ")";
    throw Error(ErrorCode::kInternal, request.method + " " + request.url + " failed: " + what);
  }
  if (t.on_bytes && *t.on_bytes) (*t.on_bytes)(t.received);
  return std::move(t.response);
}

}  // namespace

std::string range_header(uint64_t begin, uint64_t end) {
  if (begin == 0 && end == 0) return "";
  return "bytes=" + std::to_string(begin) + "-" + (end > 0 ? std::to_string(end - 1) : "");
}

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? "" : it->second;
}

HttpResponse http_fetch(const HttpRequest& request, const std::atomic<bool>* cancel) {
  Transfer t;
  std::string body;
  std::function<void(long, const char*, size_t)> sink = [&](long, const char* p, size_t n) {
    body.append(p, n);
  };
  t.sink = &sink;
  t.cancel = cancel;
  HttpResponse r = perform(request, t);
  if (r.status >= 200 && r.status < 300) r.body = std::move(body);
  return r;
}

HttpResponse http_download(const HttpRequest& request,
                           const std::function<void(long, const char*, size_t)>& sink,
                           const std::function<void(uint64_t)>& on_bytes, const std::atomic<bool>* cancel) {
  Transfer t;
  t.sink = &sink;
  t.on_bytes = &on_bytes;
  t.cancel = cancel;
  return perform(request, t);
}

}  // namespace cortex::storage
