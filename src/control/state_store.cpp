#include "control/state_store.h"

#include <sqlite3.h>

#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace cortex::control {

namespace {

// A prepared statement that finalizes itself; bind() takes values in order.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK)
      throw Error(ErrorCode::kInternal, std::string("state store: ") + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& bind(const std::string& v) {
    sqlite3_bind_text(stmt_, ++index_, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int64_t v) {
    sqlite3_bind_int64(stmt_, ++index_, v);
    return *this;
  }
  // Steps once: true while a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(ErrorCode::kInternal, std::string("state store: ") + sqlite3_errmsg(db_));
  }
  std::string text(int col) {
    auto* p = sqlite3_column_text(stmt_, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  int64_t integer(int col) { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int index_ = 0;
};

int64_t now_seconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

StoredApi api_from_row(Statement& s) {
  StoredApi api;
  api.deployment = s.text(0);
  api.project_dir = s.text(1);
  api.spec = api_spec_from_json(nlohmann::json::parse(s.text(2)));
  api.version = static_cast<int>(s.integer(3));
  api.replica_template = s.text(4);
  api.updated_at = s.integer(5);
  api.requested_replicas = static_cast<int>(s.integer(6));
  return api;
}

constexpr const char* kApiColumns =
    "deployment, project_dir, spec, version, replica_template, updated_at, requested_replicas";

}  // namespace

std::unique_ptr<StateStore> StateStore::open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw Error(ErrorCode::kInternal, "cannot open the state database " + path + ": " + message);
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<StateStore> store(new StateStore(db));
  store->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
  store->exec(
      "CREATE TABLE IF NOT EXISTS apis (name TEXT PRIMARY KEY, deployment TEXT NOT NULL, project_dir TEXT "
      "NOT NULL, spec TEXT NOT NULL, version INTEGER NOT NULL, replica_template TEXT NOT NULL, updated_at "
      "INTEGER NOT NULL, requested_replicas INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS api_versions (name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT "
      "NULL, created_at INTEGER NOT NULL, PRIMARY KEY (name, version));"
      "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, api "
      "TEXT NOT NULL, message TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS replicas (id TEXT PRIMARY KEY, api TEXT NOT NULL, pid INTEGER NOT NULL);");
  return store;
}

StateStore::~StateStore() {
  sqlite3_close(db_);
}

void StateStore::exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string m = message ? message : "unknown error";
    sqlite3_free(message);
    throw Error(ErrorCode::kInternal, "state store: " + m);
  }
}

std::vector<StoredApi> StateStore::apis() {
  std::lock_guard lock(mutex_);
  Statement s(db_, std::string("SELECT ") + kApiColumns + " FROM apis ORDER BY deployment, name");
  std::vector<StoredApi> out;
  while (s.step()) out.push_back(api_from_row(s));
  return out;
}

std::optional<StoredApi> StateStore::api(const std::string& name) {
  std::lock_guard lock(mutex_);
  Statement s(db_, std::string("SELECT ") + kApiColumns + " FROM apis WHERE name = ?");
  s.bind(name);
  if (!s.step()) return std::nullopt;
  return api_from_row(s);
}

void StateStore::put_api(const StoredApi& api) {
  std::lock_guard lock(mutex_);
  std::string spec = to_json(api.spec).dump();
  exec("BEGIN");
  try {
    Statement s(
        db_,
        "INSERT OR REPLACE INTO apis (name, deployment, project_dir, spec, version, replica_template, "
        "updated_at, requested_replicas) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind(api.spec.name).bind(api.deployment).bind(api.project_dir).bind(spec).bind(int64_t{api.version});
    s.bind(api.replica_template).bind(api.updated_at).bind(int64_t{api.requested_replicas});
    s.step();
    Statement v(db_,
                "INSERT OR REPLACE INTO api_versions (name, version, spec, created_at) VALUES (?, ?, ?, ?)");
    v.bind(api.spec.name).bind(int64_t{api.version}).bind(spec).bind(now_seconds());
    v.step();
    exec("COMMIT");
  } catch (...) {
    exec("ROLLBACK");
    throw;
  }
}

void StateStore::delete_api(const std::string& name) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "DELETE FROM apis WHERE name = ?");
  s.bind(name);
  s.step();
}

void StateStore::set_requested_replicas(const std::string& name, int replicas) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "UPDATE apis SET requested_replicas = ? WHERE name = ?");
  s.bind(int64_t{replicas}).bind(name);
  s.step();
}

void StateStore::add_event(const std::string& api, const std::string& message) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "INSERT INTO events (time, api, message) VALUES (?, ?, ?)");
  s.bind(now_seconds()).bind(api).bind(message);
  s.step();
}

std::vector<StoredEvent> StateStore::events(const std::string& api, int limit) {
  std::lock_guard lock(mutex_);
  Statement s(
      db_,
      "SELECT time, api, message FROM (SELECT id, time, api, message FROM events WHERE api = ? ORDER BY "
      "id DESC LIMIT ?) ORDER BY id");
  s.bind(api).bind(int64_t{limit});
  std::vector<StoredEvent> out;
  while (s.step()) out.push_back({s.integer(0), s.text(1), s.text(2)});
  return out;
}

void StateStore::put_replica(const StoredReplica& replica) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "INSERT OR REPLACE INTO replicas (id, api, pid) VALUES (?, ?, ?)");
  s.bind(replica.id).bind(replica.api).bind(int64_t{replica.pid});
  s.step();
}

void StateStore::delete_replica(const std::string& id) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "DELETE FROM replicas WHERE id = ?");
  s.bind(id);
  s.step();
}

std::vector<StoredReplica> StateStore::replicas() {
  std::lock_guard lock(mutex_);
  Statement s(db_, "SELECT id, api, pid FROM replicas");
  std::vector<StoredReplica> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), static_cast<int>(s.integer(2))});
  return out;
}

}  // namespace cortex::control
