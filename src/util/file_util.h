// Small whole-file helpers.
#pragma once

#include <string>

namespace cortex {

// Reads a whole file; throws Error(kNotFound) naming the file when it cannot be opened.
std::string read_file(const std::string& path);
// Writes a whole file atomically (temporary name in the same folder, then rename).
void write_file_atomic(const std::string& path, const std::string& contents);
bool file_exists(const std::string& path);
// The last max_bytes of a file (all of it when shorter; "" when it cannot be read). Reads only that much.
std::string read_file_tail(const std::string& path, size_t max_bytes);
// Cortex's state folder: $CORTEX_HOME, else ~/.cortex (absolute, normalised).
std::string cortex_home();

}  // namespace cortex
