// Weights converted on load (a model run in a type other than its file's: --dtype, or dtype: in
// cortex.yaml) kept in a file of their own, written once and then mapped by every process that loads the
// same model in the same type: replicas share its pages in the page cache, as they share a file used in
// place, and start without converting again.
//
// One entry per model and type in the cache folder ($CORTEX_HOME/cache/converted unless told otherwise):
//   NAME-KIND-HASH.weights   a header, then the converted pieces in the order the loader asked for them
//   NAME-KIND-HASH.lock      flock'd while a process looks for the file or writes it, so that replicas
//                            starting at once convert once
// The header names what the pieces were converted from: each of the model's files (path, size,
// modification time, inode) and the kind of conversion (the type, and the version of the layouts the
// loader writes). A file that does not match the model as it is now (changed or replaced since) is not
// used: the loader converts again and the file is overwritten. A file is written under a temporary name
// and renamed into place once complete and flushed to disk, so the name never holds a partial file.
// The file's modification time is its "last used": each load that maps it sets it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/cache_files.h"
#include "util/file_lock.h"
#include "util/mapped_file.h"

namespace cortex::model {

class ConvertedWeightsCache {
 public:
  // The entry for the model at `model_path` (a folder or file, which names the entry), made of the files
  // `sources`, converted as `kind` (free text, matched whole). Creates `dir`. Throws Error naming what
  // fails (a source that cannot be read).
  ConvertedWeightsCache(const std::string& dir, const std::string& model_path,
                        const std::vector<std::string>& sources, const std::string& kind);

  const std::string& path() const { return path_; }  // the .weights file

  // Takes the entry's lock until this object is destroyed (waits while another process holds it), first
  // creating the folder. Throws Error naming what fails.
  void lock();

  struct Contents {
    std::unique_ptr<MappedFile> file;
    std::vector<std::pair<size_t, size_t>> pieces;  // (offset in the file, bytes), in the order written
  };
  // The file's pieces when it exists, is whole and was converted from the sources as they are now;
  // nullopt otherwise (a damaged file is logged as such).
  std::optional<Contents> open() const;

  // Writes `pieces` ((data, bytes), each placed 64-byte aligned) as the entry's file, replacing any
  // there. Throws Error naming the file (no partial file is left).
  void write(const std::vector<std::pair<const void*, size_t>>& pieces) const;

 private:
  std::string path_;
  std::string identity_;  // the header's account of the sources and kind
  std::unique_ptr<FileLock> lock_;
  mutable std::string reported_state_;  // the file's state (inode, size, time) open() last logged as unusable
};

// What `cortex cache ls` shows of a converted-weights file.
struct ConvertedWeightsInfo {
  enum class State {
    kCurrent,          // converted from the model as it is now: loads map it
    kModelChanged,     // the model's files changed since: the next load converts again
    kModelGone,        // a file of the model no longer exists: no load will use it
    kModelUnreadable,  // a file of the model cannot be read by this user (permissions, I/O): unknown
    kOtherFormat,      // written by a version of cortex with another file format or other layouts
    kDamaged,          // not a whole converted-weights file
    kNoFile,           // only a lock or a partial file, left by a conversion that stopped or is under way
  };
  std::string path;  // the .weights file (it may not exist: kNoFile)
  State state = State::kDamaged;
  std::string detail;                // why it is damaged
  std::string kind;                  // what it was converted to ("f16 ..."), when readable
  std::vector<std::string> sources;  // the model's files it was converted from, when readable
  bool busy = false;                 // a process holds its lock: converting or writing it
  bool in_use = false;               // a process maps it (file_in_use): any user's, in any container
  uint64_t bytes = 0;                // on disk, a partial file included
  std::optional<std::chrono::system_clock::time_point> last_used;
  std::string stamp;  // the file's file_stamp: changes when it is rewritten or used
};
const char* converted_weights_state_name(ConvertedWeightsInfo::State state);

// The entries in `dir` (the converted-weights cache folder), by file name; none when it does not exist.
// `current_kind` says whether a kind is one that loads of this build ask for (the others: kOtherFormat).
std::vector<ConvertedWeightsInfo> list_converted_weights(
    const std::string& dir, const std::function<bool(const std::string& kind)>& current_kind);

// Removes the entry whose file is `weights_path` (the file, a partial one, its lock) under its lock, so
// that no process is writing it meanwhile. Processes that map the file keep its pages; a later load
// converts again. `unchanged`, when given, is asked once the lock is held (whether the entry is still as
// it was when it was chosen); false keeps it. Throws Error naming what cannot be removed.
CacheRemoval remove_converted_weights(const std::string& weights_path,
                                      const std::function<bool()>& unchanged = {});

}  // namespace cortex::model
