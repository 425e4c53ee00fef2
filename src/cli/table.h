// Plain-text tables for the commands' output.
#pragma once

#include <string>
#include <vector>

namespace cortex::cli {

// Left-aligned columns, two spaces apart, the first row as given (a header, usually).
std::string render_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace cortex::cli
