// Where a model lives, as written in cortex.yaml's `model:` or on the command line: a local path,
// file://, s3://bucket/prefix, http(s)://host/path (one .gguf file, or a base URL holding the Hugging
// Face file names) or hf://owner/name[@revision] (or a hub's top-level name: hf://gpt2).
#pragma once

#include <string>

namespace cortex::storage {

enum class UriScheme { kLocal, kS3, kHttp, kHf };

struct ModelUri {
  UriScheme scheme = UriScheme::kLocal;
  std::string text;      // as given
  std::string path;      // kLocal: file system path (file:// removed and percent-decoded)
  std::string bucket;    // kS3
  std::string key;       // kS3: object key or prefix, no leading '/', no trailing '/'
  std::string url;       // kHttp: the URL without a trailing '/'
  std::string repo;      // kHf: owner/name
  std::string revision;  // kHf: branch, tag or commit ("main" when not given)

  bool remote() const { return scheme != UriScheme::kLocal; }
  // One spelling per location ("s3://b/k", the URL without trailing '/', "hf://o/n@rev"): the cache key.
  std::string canonical() const;
};

// Parses `text`; throws Error(kInvalidArgument) for an unknown scheme or a URI that names nothing.
ModelUri parse_model_uri(const std::string& text);
// True for s3://, http(s):// and hf:// (what needs a download); false for paths and file://.
bool is_remote_model(const std::string& text);
// "%20" → " " (for file:// paths and keys given encoded).
std::string percent_decode(const std::string& s);

}  // namespace cortex::storage
