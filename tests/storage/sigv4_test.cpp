// AWS Signature V4 against AWS's published examples and against botocore's signer; model URIs; where the
// S3 settings come from.
#include "storage/sigv4.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "storage/aws_credentials.h"
#include "storage/model_cache.h"
#include "storage/model_uri.h"
#include "support/test_env.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::storage {
namespace {

AwsCredentials example_credentials() {
  AwsCredentials c;
  c.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  c.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  return c;
}

std::string signature_of(const std::map<std::string, std::string>& headers) {
  const std::string auth = headers.at("authorization");
  return auth.substr(auth.find("Signature=") + 10);
}

// The "GET Object" example of AWS's Signature V4 documentation for S3.
TEST(SigV4, MatchesAwsDocumentedGetObjectExample) {
  SigV4Request r;
  r.host = "examplebucket.s3.amazonaws.com";
  r.path = "/test.txt";
  r.headers = {{"range", "bytes=0-9"}};
  r.amz_date = "20130524T000000Z";
  auto h = sign_v4(r, example_credentials());
  EXPECT_EQ(h.at("authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// The "GET Bucket (List Objects)" example: a query string.
TEST(SigV4, MatchesAwsDocumentedListObjectsExample) {
  SigV4Request r;
  r.host = "examplebucket.s3.amazonaws.com";
  r.path = "/";
  r.query = {{"max-keys", "2"}, {"prefix", "J"}};
  r.amz_date = "20130524T000000Z";
  EXPECT_EQ(signature_of(sign_v4(r, example_credentials())),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

// Keys and queries with characters that need encoding, a session token and another region, signed by
// botocore (Debian's python3-botocore) for comparison.
TEST(SigV4, AgreesWithBotocoreOnEncodedKeysQueriesAndSessionTokens) {
  AwsCredentials c = example_credentials();
  c.session_token = "token/with+chars=";
  SigV4Request r;
  r.host = "127.0.0.1:9000";
  const std::string key = "models/gpt 2 (small)/caf\xc3\xa9+v1.json";
  r.path = "/bucket/" + uri_encode(key, false);
  r.query = {{"list-type", "2"}, {"prefix", "a b/c~d*e"}, {"continuation-token", "x/y=="}};
  r.headers = {{"range", "bytes=100-"}};
  r.amz_date = "20261125T101500Z";
  r.region = "eu-west-3";
  const std::string ours = signature_of(sign_v4(r, c));

  const std::string script = R"(
import sys
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, date, key, secret, token, region = sys.argv[1:7]
req = AWSRequest(method="GET", url=url, headers={"Range": "bytes=100-"})
req.context["timestamp"] = date
creds = Credentials(key, secret, token)
signer = S3SigV4Auth(creds, "s3", region)
req.headers["X-Amz-Date"] = date
req.headers["X-Amz-Content-SHA256"] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
req.headers["X-Amz-Security-Token"] = token
req.headers["Host"] = "127.0.0.1:9000"
cr = signer.canonical_request(req)
print(signer.signature(signer.string_to_sign(req, cr), req))
)";
  const std::string url = "http://127.0.0.1:9000" + r.path + "?" + canonical_query(r.query);
  auto py = testing::run_command({CORTEX_PYTHON3, "-c", script, url, r.amz_date, c.access_key_id,
                                  c.secret_access_key, c.session_token, r.region});
  ASSERT_EQ(py.exit_code, 0) << py.err;
  EXPECT_EQ(ours + "\n", py.out);
}

TEST(SigV4, AnonymousCredentialsSendNoAuthorization) {
  SigV4Request r;
  r.host = "h";
  auto h = sign_v4(r, AwsCredentials{});
  EXPECT_EQ(h.count("authorization"), 0u);
  EXPECT_EQ(h.at("x-amz-content-sha256"), kEmptyPayloadSha256);
}

TEST(ModelUri, ParsesEverySchemeAndRejectsWhatNamesNothing) {
  EXPECT_EQ(parse_model_uri("./model").scheme, UriScheme::kLocal);
  EXPECT_EQ(parse_model_uri("file:///srv/my%20model").path, "/srv/my model");
  auto s3 = parse_model_uri("s3://bucket/path/to/model/");
  EXPECT_EQ(s3.scheme, UriScheme::kS3);
  EXPECT_EQ(s3.bucket, "bucket");
  EXPECT_EQ(s3.key, "path/to/model");
  EXPECT_EQ(parse_model_uri("s3://bucket").key, "");
  auto http = parse_model_uri("https://host/models/gpt2/");
  EXPECT_EQ(http.url, "https://host/models/gpt2");
  auto hf = parse_model_uri("hf://openai-community/gpt2@v1.0");
  EXPECT_EQ(hf.repo, "openai-community/gpt2");
  EXPECT_EQ(hf.revision, "v1.0");
  EXPECT_EQ(parse_model_uri("hf://gpt2org/gpt2").revision, "main");
  EXPECT_EQ(parse_model_uri("hf://gpt2").repo, "gpt2");
  EXPECT_TRUE(is_remote_model("HF://a/b"));
  EXPECT_FALSE(is_remote_model("file:///x"));
  for (const char* bad : {"s3://", "s3:///key", "https:///x", "hf://", "hf://a/b/c", "hf:///b", "hf://a/b@",
                          "ftp://x/y", "file://relative"})
    EXPECT_THROW(parse_model_uri(bad), Error) << bad;
}

TEST(ModelCache, EntryNamesAreReadableAndDistinct) {
  EXPECT_EQ(cache_entry_name("s3://bucket/gpt2").rfind("s3-bucket_gpt2-", 0), 0u);
  EXPECT_NE(cache_entry_name("s3://bucket/gpt2"), cache_entry_name("s3://bucket/gpt2 http://other:9000"));
}

class S3SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("aws");
    for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                          "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                          "AWS_ENDPOINT_URL_S3"})
      ::unsetenv(v);
    write_file_atomic(dir_ + "/credentials",
                      "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n"
                      "# a comment\n[team]\naws_access_key_id=AKIDTEAM\naws_secret_access_key=s2\n"
                      "aws_session_token = tok\n");
    write_file_atomic(dir_ + "/config",
                      "[default]\nregion = eu-central-1\n[profile team]\nregion = ap-south-1\n"
                      "endpoint_url = http://minio:9000/\n");
    ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir_ + "/credentials").c_str(), 1);
    ::setenv("AWS_CONFIG_FILE", (dir_ + "/config").c_str(), 1);
  }
  std::string dir_;
};

TEST_F(S3SettingsTest, ProfilesEnvironmentAndOverrides) {
  S3Settings d = resolve_s3_settings();
  EXPECT_EQ(d.credentials.access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(d.region, "eu-central-1");
  EXPECT_TRUE(d.endpoint.empty());
  EXPECT_FALSE(d.path_style);

  ::setenv("AWS_PROFILE", "team", 1);
  S3Settings t = resolve_s3_settings();
  EXPECT_EQ(t.credentials.access_key_id, "AKIDTEAM");
  EXPECT_EQ(t.credentials.session_token, "tok");
  EXPECT_EQ(t.region, "ap-south-1");
  EXPECT_EQ(t.endpoint, "http://minio:9000");
  EXPECT_TRUE(t.path_style);

  ::setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "s3", 1);
  ::setenv("AWS_REGION", "us-west-2", 1);
  S3Settings e = resolve_s3_settings("http://override:1", "sa-east-1");
  EXPECT_EQ(e.credentials.access_key_id, "AKIDENV");
  EXPECT_EQ(e.region, "sa-east-1");
  EXPECT_EQ(e.endpoint, "http://override:1");

  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::setenv("AWS_PROFILE", "nobody", 1);
  try {
    resolve_s3_settings();
    FAIL() << "a missing profile must be an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("AWS profile 'nobody'"), std::string::npos) << err.what();
  }
  ::unsetenv("AWS_PROFILE");
}

}  // namespace
}  // namespace cortex::storage
