// The operator's durable state in SQLite ($CORTEX_HOME/state.db): the APIs deployed (their resolved spec,
// version and replica count), every version of each spec, events, and the replica processes running, so
// that an operator restart brings everything back. Thread-safe: one connection behind a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control/api_spec.h"

struct sqlite3;

namespace cortex::control {

struct StoredApi {
  std::string deployment;
  std::string project_dir;
  ApiSpec spec;
  int version = 1;               // increases on every change of the spec
  std::string replica_template;  // fingerprint of what the replicas run; a change rolls them over
  int64_t updated_at = 0;        // unix seconds
  int requested_replicas = 1;    // what the autoscaler last asked for
};

struct StoredEvent {
  int64_t time = 0;  // unix seconds
  std::string api;
  std::string message;
};

struct StoredReplica {
  std::string id;
  std::string api;
  int pid = 0;
};

class StateStore {
 public:
  // Opens (creating if needed) the database; throws Error naming the file when it cannot.
  static std::unique_ptr<StateStore> open(const std::string& path);
  ~StateStore();

  std::vector<StoredApi> apis();
  std::optional<StoredApi> api(const std::string& name);
  // Inserts or replaces the API and records its spec under its version.
  void put_api(const StoredApi& api);
  void delete_api(const std::string& name);
  void set_requested_replicas(const std::string& name, int replicas);

  void add_event(const std::string& api, const std::string& message);
  std::vector<StoredEvent> events(const std::string& api, int limit);

  // Replica processes, so that a restarted operator can stop the ones its predecessor left behind.
  void put_replica(const StoredReplica& replica);
  void delete_replica(const std::string& id);
  std::vector<StoredReplica> replicas();

 private:
  explicit StateStore(sqlite3* db) : db_(db) {}
  void exec(const std::string& sql);
  sqlite3* db_;
  std::mutex mutex_;  // guards db_
};

}  // namespace cortex::control
