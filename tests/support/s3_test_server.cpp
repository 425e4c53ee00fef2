#include "support/s3_test_server.h"

#include <filesystem>

#include "support/test_env.h"
#include "util/error.h"

namespace cortex::testing {

S3TestServer::S3TestServer(int throttle) {
  dir_ = make_temp_dir("s3");
  std::filesystem::create_directories(dir_ + "/data");
  s3_port_ = free_port();
  s3rver_ = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"node", source_dir() + "/.deps/node_modules/s3rver/bin/s3rver.js", "-d",
                               dir_ + "/data", "-a", "127.0.0.1", "-p", std::to_string(s3_port_), "--silent"},
      dir_ + "/s3rver.log");
  if (!wait_for_port(s3_port_, std::chrono::seconds(20)))
    throw Error(ErrorCode::kInternal, "s3rver did not start (see " + dir_ + "/s3rver.log)");
  start_front(throttle);
}

void S3TestServer::start_front(int throttle) {
  std::vector<std::string> argv{CORTEX_PYTHON3, source_dir() + "/tests/storage/sigv4_proxy.py",
                                "--port",       std::to_string(front_port_),
                                "--port-file",  dir_ + "/front.port",
                                "--upstream",   "127.0.0.1:" + std::to_string(s3_port_),
                                "--access-key", kAccessKey,
                                "--secret-key", kSecretKey,
                                "--throttle",   std::to_string(throttle)};
  std::filesystem::remove(dir_ + "/front.port");
  front_ = std::make_unique<BackgroundProcess>(argv, dir_ + "/front.log");
  std::string port = wait_for_file(dir_ + "/front.port", std::chrono::seconds(20));
  if (port.empty())
    throw Error(ErrorCode::kInternal, "the SigV4 front did not start (see " + dir_ + "/front.log)");
  front_port_ = std::stoi(port);
}

void S3TestServer::stop_front() {
  front_->kill();
}

void S3TestServer::upload(const std::string& local, const std::string& bucket, const std::string& key) const {
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(s3_port_);
  // awscli reads its credentials from the environment; s3rver accepts its own default pair.
  const std::string env =
      "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 "
      "AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null ";
  const std::string aws = env + "/usr/bin/aws --endpoint-url " + endpoint + " ";
  run_command({"sh", "-c", aws + "s3 mb s3://" + bucket + " >/dev/null 2>&1 || true"});
  const bool folder = std::filesystem::is_directory(local);
  auto r = run_command({"sh", "-c",
                        aws + "s3 cp --only-show-errors " + (folder ? "--recursive " : "") + "'" + local +
                            "' 's3://" + bucket + "/" + key + (folder ? "/" : "") + "'"});
  if (r.exit_code != 0) throw Error(ErrorCode::kInternal, "aws s3 cp failed: " + r.err + r.out);
}

}  // namespace cortex::testing
