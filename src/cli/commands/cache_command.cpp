// cortex cache ls|rm|prune: what the caches under $CORTEX_HOME/cache hold (models downloaded from
// s3://, https://, hf://, and weights converted on load), and removing what is no longer wanted.
//
// An entry is removed under its lock, so never while a process is downloading or converting it (rm: an
// error, exit status 1; prune: skipped); prune also keeps what was written or used after it looked. One
// that running replicas map is removed all the same (they keep its pages; its space comes back when they
// exit), and the command says so.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "cli/table.h"
#include "control/quantity.h"
#include "model/converted_weights_cache.h"
#include "model/gpt2_weights.h"
#include "storage/model_cache.h"
#include "storage/model_uri.h"
#include "util/cache_files.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::system_clock;

// One entry of either cache, as the subcommands see it.
struct Entry {
  std::string kind;     // "download" or "converted"
  std::string name;     // the folder's or file's name
  std::string path;     // what removing it removes
  std::string source;   // download: the URI; converted: "TYPE of MODEL"
  std::string state;    // download: complete, incomplete; converted: converted_weights_state_name
  bool usable = true;   // false: no load will ever use it as it is (prune removes it by default)
  bool busy = false;    // a process holds its lock (downloading or converting it)
  bool in_use = false;  // a process maps its files: those in mapped_by, or ones this user cannot see
  uint64_t bytes = 0;
  std::optional<Clock::time_point> last_used;
  std::string stamp;                 // its key file's file_stamp when listed (see stamp_file)
  std::set<int> mapped_by;           // running processes that map its files
  std::vector<std::string> sources;  // converted: the model files it was converted from
};

// The file whose stamp says whether an entry was written or used since it was listed.
std::string stamp_file(const Entry& e) {
  return e.kind == "download" ? e.path + "/manifest.json" : e.path;
}

std::string downloads_dir() {
  return cortex_home() + "/cache";
}

// The model a converted file came from: its one file, or the folder that holds all of them.
std::string model_of(const std::vector<std::string>& sources) {
  if (sources.empty()) return "?";
  if (sources.size() == 1) return sources[0];
  const std::string folder = fs::path(sources[0]).parent_path().string();
  for (const auto& s : sources)
    if (fs::path(s).parent_path().string() != folder) return sources[0] + " and others";
  return folder;
}

// The entries of the downloads cache and of the converted-weights folder `converted_dir`.
std::vector<Entry> collect_entries(const std::string& converted_dir) {
  std::vector<Entry> entries;
  const MappedFiles mapped = files_mapped_by_processes();
  for (const auto& d : storage::list_cache_entries(downloads_dir())) {
    Entry e;
    e.kind = "download";
    e.name = d.name;
    e.path = d.dir;
    e.source = d.uri.empty() ? "?" : d.uri;
    e.state = d.complete ? "complete" : "incomplete";
    e.usable = d.complete;
    e.busy = d.busy;
    e.bytes = d.bytes;
    e.last_used = d.last_used;
    e.stamp = d.stamp;
    e.mapped_by = processes_mapping(mapped, d.dir);
    e.in_use = d.in_use || !e.mapped_by.empty();
    entries.push_back(std::move(e));
  }
  using State = model::ConvertedWeightsInfo::State;
  for (auto& c : model::list_converted_weights(converted_dir, model::Gpt2Weights::writes_conversion_kind)) {
    Entry e;
    e.kind = "converted";
    e.name = fs::path(c.path).filename().string();
    e.path = c.path;
    e.source = c.kind.empty() ? "?" : c.kind.substr(0, c.kind.find('.')) + " of " + model_of(c.sources);
    e.state = model::converted_weights_state_name(c.state);
    if (!c.detail.empty()) e.state += " (" + c.detail + ")";
    // A model this user cannot read may well be current for the replicas of another: kept.
    e.usable = c.state == State::kCurrent || c.state == State::kModelUnreadable;
    e.busy = c.busy;
    e.bytes = c.bytes;
    e.last_used = c.last_used;
    e.stamp = c.stamp;
    e.mapped_by = processes_mapping(mapped, c.path);
    e.in_use = c.in_use || !e.mapped_by.empty();
    e.sources = std::move(c.sources);
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string age_text(const std::optional<Clock::time_point>& when) {
  if (!when) return "never";
  return age_since(std::chrono::duration_cast<std::chrono::seconds>(when->time_since_epoch()).count()) +
         " ago";
}

std::string iso_time(const std::optional<Clock::time_point>& when) {
  if (!when) return "";
  const std::time_t t = Clock::to_time_t(*when);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string mapped_text(const Entry& e) {
  if (e.busy) return e.kind == "download" ? "downloading" : "converting";
  if (e.mapped_by.empty()) return e.in_use ? "in use" : "-";  // by processes this user cannot see
  return std::to_string(e.mapped_by.size()) + (e.mapped_by.size() == 1 ? " process" : " processes");
}

json entry_json(const Entry& e) {
  json pids = json::array();
  for (int pid : e.mapped_by) pids.push_back(pid);
  json j = {{"kind", e.kind},
            {"name", e.name},
            {"path", e.path},
            {"source", e.source},
            {"state", e.state},
            {"usable", e.usable},
            {"busy", e.busy},
            {"in_use", e.in_use},
            {"bytes", e.bytes},
            {"mapped_by", pids},
            {"last_used", e.last_used ? json(iso_time(e.last_used)) : json(nullptr)}};
  if (e.kind == "converted") j["sources"] = e.sources;
  return j;
}

// "7d", "12h", "30m", "1h30m" (cortex.yaml's durations, and days), at most 100 years.
std::chrono::milliseconds parse_age(const std::string& text) {
  const auto wrong = [&] {
    return invalid_argument("--unused-for '" + text +
                            "': give a duration such as 7d, 12h or 30m (at most 36500d)");
  };
  constexpr auto kLongest = std::chrono::hours(24 * 36500);
  std::chrono::milliseconds age;
  if (text.size() > 1 && text.back() == 'd' && text.find_first_not_of("0123456789") == text.size() - 1) {
    if (text.size() > 6) throw wrong();
    age = std::chrono::hours(24) * std::stoll(text.substr(0, text.size() - 1));
  } else {
    try {
      age = control::parse_duration(text);
    } catch (const Error&) {
      throw wrong();
    }
  }
  if (age > kLongest) throw wrong();
  return age;
}

// The converted entries made from the download entry `download` (every source inside its folder).
std::vector<const Entry*> converted_from(const Entry& download, const std::vector<Entry>& all) {
  std::vector<const Entry*> made;
  for (const auto& c : all)
    if (c.kind == "converted" && !c.sources.empty() &&
        std::all_of(c.sources.begin(), c.sources.end(),
                    [&](const std::string& s) { return s.starts_with(download.path + "/"); }))
      made.push_back(&c);
  return made;
}

// What a removal did, over all the entries it was asked to remove.
struct Removal {
  bool dry_run = false;
  bool only_if_unchanged = false;  // prune: keep what was written or used since it was listed
  std::set<std::string> done;      // paths removed (or that would be)
  uint64_t bytes = 0;
  int count = 0;
  bool refused = false;  // a process held the lock of an entry named to be removed
};

// Removes `e` and, for a download, the converted entries made from it, printing a line for each;
// entries already in r.done are skipped.
void remove_entry(const Entry& e, const std::vector<Entry>& all, const std::string& why, Removal& r) {
  std::vector<const Entry*> targets = {&e};
  if (e.kind == "download")
    for (const Entry* c : converted_from(e, all)) targets.push_back(c);
  for (const Entry* t : targets) {
    if (r.done.count(t->path)) continue;
    const std::string what = t->kind + " " + t->name + " (" + t->source + ", " + format_bytes(t->bytes) + ")";
    const std::string reason = t == &e ? why : "made from the download above";
    const std::string tail = reason.empty() ? "" : ": " + reason;
    if (!r.dry_run) {
      std::function<bool()> unchanged;
      if (r.only_if_unchanged) unchanged = [t] { return file_stamp(stamp_file(*t)) == t->stamp; };
      const CacheRemoval result = t->kind == "download" ? storage::remove_cache_entry(t->path, unchanged)
                                                        : model::remove_converted_weights(t->path, unchanged);
      if (result == CacheRemoval::kBusy) {
        const std::string filling = t->kind == "download" ? "downloading" : "converting";
        if (r.only_if_unchanged) {  // prune: as if it had been busy when listed
          std::cout << "skipped " << t->kind << " " << t->name << ": a process is " << filling << " it\n";
        } else {
          std::cerr << "cortex: " << t->name << ": a process is " << filling << " it; not removed\n";
          r.refused = true;
        }
        if (t == &e) return;  // nor what was made from it
        continue;
      }
      if (result == CacheRemoval::kChanged) {
        std::cout << "kept " << t->kind << " " << t->name << ": written or used since it was listed\n";
        if (t == &e) return;
        continue;
      }
    }
    std::cout << (r.dry_run ? "would remove " : "removed ") << what << tail << "\n";
    if (!t->mapped_by.empty()) {
      const bool one = t->mapped_by.size() == 1;
      std::cout << "  " << t->mapped_by.size() << (one ? " running process maps" : " running processes map")
                << " it and keep" << (one ? "s" : "") << " it: its space comes back when "
                << (one ? "it exits" : "they exit") << "\n";
    } else if (t->in_use) {
      std::cout << "  running processes that this user cannot see (another user's, or in a container) map "
                   "it and keep it: its space comes back when they exit\n";
    }
    r.done.insert(t->path);
    r.bytes += t->bytes;
    ++r.count;
  }
}

void finish_removal(const Removal& r) {
  std::cout << (r.dry_run ? "would remove " : "removed ") << format_bytes(r.bytes) << " (" << r.count
            << (r.count == 1 ? " entry" : " entries") << ")\n";
  if (r.refused) throw Error(ErrorCode::kInternal, "some entries are being filled by another process");
}

void list_command(const std::string& converted_dir, bool as_json) {
  const auto entries = collect_entries(converted_dir);
  if (as_json) {
    json j = {{"downloads", downloads_dir()}, {"converted", converted_dir}, {"entries", json::array()}};
    for (const auto& e : entries) j["entries"].push_back(entry_json(e));
    std::cout << j.dump(2) << "\n";
    return;
  }
  // Where the entries are: the downloads folder, and the converted weights' when it lies elsewhere.
  std::string where = downloads_dir();
  if (!(converted_dir + "/").starts_with(where + "/")) where += " and " + converted_dir;
  if (entries.empty()) {
    std::cout << "the cache (" << where << ") holds nothing\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {
      {"kind", "name", "size", "last used", "state", "mapped by", "source"}};
  uint64_t total = 0;
  for (const auto& e : entries) {
    rows.push_back(
        {e.kind, e.name, format_bytes(e.bytes), age_text(e.last_used), e.state, mapped_text(e), e.source});
    total += e.bytes;
  }
  std::cout << render_table(rows) << entries.size() << (entries.size() == 1 ? " entry, " : " entries, ")
            << format_bytes(total) << " in " << where << "\n";
}

// `path` as an absolute path without "." and "..", and with symbolic links resolved as far as it exists.
std::string real_path(const std::string& path) {
  std::error_code ec;
  const fs::path real = fs::weakly_canonical(fs::absolute(path), ec);
  std::string out = (ec ? fs::absolute(path).lexically_normal() : real).string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// Whether `target` (a name, a model URI or a local model's path) names `e`.
bool names_entry(const std::string& target, const Entry& e) {
  if (e.name == target || (e.kind == "converted" && e.name == target + ".weights")) return true;
  if (storage::is_remote_model(target)) {
    try {
      return e.kind == "download" && e.source == storage::parse_model_uri(target).canonical();
    } catch (const Error&) {
      return false;
    }
  }
  // A local model: the weights converted from it (its folder, or its one file), even once it is gone.
  if (e.kind != "converted" || e.sources.empty()) return false;
  const std::string model = model_of(e.sources);
  const std::string given = fs::absolute(target).lexically_normal().string();
  return model == given || model + "/" == given || real_path(model) == real_path(target);
}

void remove_command(const std::string& converted_dir, const std::vector<std::string>& targets) {
  const auto entries = collect_entries(converted_dir);
  std::vector<const Entry*> chosen;
  std::string unknown;
  for (const std::string& t : targets) {
    bool matched = false;
    for (const auto& e : entries)
      if (names_entry(t, e)) {
        chosen.push_back(&e);
        matched = true;
      }
    if (!matched) unknown += (unknown.empty() ? "" : ", ") + t;
  }
  if (!unknown.empty())
    throw not_found("nothing in the cache matches " + unknown +
                    " (give a name from `cortex cache ls`, a model URI, or a local model's path)");
  Removal r;
  for (const Entry* e : chosen)  // downloads first: the files converted from them go with them
    if (e->kind == "download") remove_entry(*e, entries, "", r);
  for (const Entry* e : chosen)
    if (e->kind == "converted") remove_entry(*e, entries, "", r);
  finish_removal(r);
}

struct PruneOptions {
  std::string unused_for;
  bool all = false, dry_run = false;
};

// Whether no running process maps `e` (nor one this user cannot see) and no load used it since `cutoff`. A
// download counts as used while weights converted from it are (a replica that runs it in another type maps
// only those).
bool unused_since(const Entry& e, const std::vector<Entry>& all, Clock::time_point cutoff) {
  std::vector<const Entry*> uses = {&e};
  if (e.kind == "download")
    for (const Entry* c : converted_from(e, all)) uses.push_back(c);
  return std::all_of(uses.begin(), uses.end(),
                     [&](const Entry* u) { return !u->in_use && (!u->last_used || *u->last_used < cutoff); });
}

void prune_command(const std::string& converted_dir, const PruneOptions& o) {
  const auto entries = collect_entries(converted_dir);
  std::optional<Clock::time_point> cutoff;
  if (!o.unused_for.empty())
    cutoff = Clock::now() - std::chrono::duration_cast<Clock::duration>(parse_age(o.unused_for));
  Removal r;
  r.dry_run = o.dry_run;
  r.only_if_unchanged = true;
  for (const auto& e : entries) {
    if (e.busy) {
      std::cout << "skipped " << e.kind << " " << e.name << ": a process is "
                << (e.kind == "download" ? "downloading" : "converting") << " it\n";
      continue;
    }
    std::string why;
    if (!e.usable)
      why = e.kind == "download" ? "an interrupted download" : e.state;
    else if (o.all)
      why = "--all";
    else if (cutoff && unused_since(e, entries, *cutoff))
      why = "last used " + age_text(e.last_used);
    if (!why.empty()) remove_entry(e, entries, why, r);
  }
  finish_removal(r);
}

}  // namespace

void add_cache_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "cache", "List and remove downloaded models and converted weights ($CORTEX_HOME/cache)");
  cmd->require_subcommand(1);
  auto converted_dir = std::make_shared<std::string>(default_converted_cache_dir());
  cmd->add_option("--converted-cache", *converted_dir,
                  "Folder of the converted weights to list and remove (the --converted-cache DIR that "
                  "generate and serve were given)")
      ->capture_default_str()
      ->transform([](std::string dir) {
        while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
        return dir;
      })
      ->check([](const std::string& dir) {
        return dir == "off" || dir.empty() ? "give the folder that holds the converted weights" : "";
      });

  auto as_json = std::make_shared<bool>(false);
  auto* ls =
      cmd->add_subcommand("ls", "List the cache's entries: size, last use, state, processes that map them");
  ls->alias("list");
  ls->fallthrough();  // --converted-cache after the subcommand's name too
  ls->add_flag("--json", *as_json, "Print JSON");
  ls->callback([converted_dir, as_json] { list_command(*converted_dir, *as_json); });

  auto targets = std::make_shared<std::vector<std::string>>();
  auto* rm = cmd->add_subcommand(
      "rm",
      "Remove entries: a name from `cortex cache ls`, a model URI (with the weights converted from it), "
      "or a local model's path (the weights converted from it)");
  rm->fallthrough();
  rm->add_option("target", *targets, "Entry name, model URI or local model path")->required();
  rm->callback([converted_dir, targets] { remove_command(*converted_dir, *targets); });

  auto o = std::make_shared<PruneOptions>();
  auto* prune = cmd->add_subcommand(
      "prune",
      "Remove what no load can use (interrupted downloads, weights converted from a model that "
      "changed or is gone), and with --unused-for what has not been used for that long");
  prune->fallthrough();
  prune->add_option("--unused-for", o->unused_for,
                    "Also remove entries unused for this long and mapped by no running process (7d, 12h)");
  prune->add_flag("--all", o->all, "Remove every entry that no process is filling");
  prune->add_flag("--dry-run", o->dry_run, "Print what would be removed, remove nothing");
  prune->callback([converted_dir, o] { prune_command(*converted_dir, *o); });
}

}  // namespace cortex::cli
