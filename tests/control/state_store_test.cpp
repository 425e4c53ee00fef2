// The state store keeps APIs, their versions, events and replicas across reopening (an operator restart).
#include "control/state_store.h"

#include <gtest/gtest.h>

#include "support/test_env.h"
#include "util/error.h"

namespace cortex::control {
namespace {

StoredApi sample_api(const std::string& name, int version) {
  StoredApi a;
  a.deployment = "text";
  a.project_dir = "/projects/text";
  a.spec.name = name;
  a.spec.model = "/models/gpt2";
  a.spec.model_format = "hf";
  a.spec.compute.max_replicas = 4;
  a.spec.autoscaling.window = std::chrono::milliseconds(2500);
  a.spec.api_key = std::string(1, 'k');
  a.version = version;
  a.replica_template = std::string("abc").append(std::to_string(version));
  a.updated_at = 1700000000 + version;
  a.requested_replicas = 2;
  return a;
}

TEST(StateStoreTest, KeepsEverythingAcrossReopen) {
  std::string path = testing::make_temp_dir("state") + "/state.db";
  {
    auto store = StateStore::open(path);
    store->put_api(sample_api("generator", 1));
    store->put_api(sample_api("generator", 2));  // an update replaces the API, keeps both versions
    store->put_api(sample_api("other", 1));
    store->set_requested_replicas("generator", 3);
    store->add_event("generator", "created");
    store->add_event("generator", "scaled");
    store->put_replica({"generator-1", "generator", 4242});
    store->delete_api("other");
  }
  auto store = StateStore::open(path);
  auto apis = store->apis();
  ASSERT_EQ(apis.size(), 1u);
  const StoredApi& a = apis[0];
  EXPECT_EQ(a.spec.name, "generator");
  EXPECT_EQ(a.deployment, "text");
  EXPECT_EQ(a.project_dir, "/projects/text");
  EXPECT_EQ(a.version, 2);
  EXPECT_EQ(a.replica_template, "abc2");
  EXPECT_EQ(a.requested_replicas, 3);
  EXPECT_EQ(a.spec.compute.max_replicas, 4);
  EXPECT_EQ(a.spec.autoscaling.window.count(), 2500);
  EXPECT_EQ(a.spec.api_key, "k");
  EXPECT_FALSE(store->api("other").has_value());
  auto events = store->events("generator", 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].message, "created");  // oldest first
  EXPECT_EQ(events[1].message, "scaled");
  EXPECT_EQ(store->events("generator", 1).at(0).message, "scaled");  // the limit keeps the newest
  auto replicas = store->replicas();
  ASSERT_EQ(replicas.size(), 1u);
  EXPECT_EQ(replicas[0].pid, 4242);
  store->delete_replica("generator-1");
  EXPECT_TRUE(store->replicas().empty());
}

TEST(StateStoreTest, UnopenableFileIsAClearError) {
  try {
    StateStore::open("/nonexistent-folder/state.db");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-folder/state.db"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cortex::control
