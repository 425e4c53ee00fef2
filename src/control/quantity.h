// Kubernetes-style quantities and Go-style durations as cortex.yaml writes them, parsed exactly (no
// floating point): cpu "1", "0.5", "500m" -> millicores; mem "2Gi", "512Mi", "1G", "1.5Gi", "1e9" ->
// bytes; durations "500ms", "10s", "5m", "1h", "1m30s" -> milliseconds. Errors are
// Error(kInvalidArgument) with a one-line message that quotes the text and says what is allowed; callers
// prefix the field.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace cortex::control {

// Cores as a plain number ("2", "0.5", "1e-1") or with a Kubernetes suffix ("500m" millicores; also
// "u", "n", "k", ...). The result must be a whole number of millicores (Kubernetes' precision) and not
// negative.
int64_t parse_cpu_quantity(std::string_view text);

// Bytes as a plain number ("1000", "1e9") or with a suffix: Ki Mi Gi Ti Pi Ei (powers of 1024) or
// k M G T P E (powers of 1000); a decimal fraction is fine when the result is whole ("1.5Gi"). The
// sub-unit suffixes m, u, n are refused (Kubernetes reads "100m" as 0.1 byte, never what was meant).
int64_t parse_memory_quantity(std::string_view text);

// One or more <number><unit> terms with units h, m, s, ms ("1m30s", "1.5s"); a bare "0" is zero. The
// result must be a whole number of milliseconds and not negative.
std::chrono::milliseconds parse_duration(std::string_view text);

// The shortest exact forms: 2000 -> "2", 500 -> "500m"; 2 << 30 -> "2Gi", 10^9 -> "1G", 1000 -> "1k",
// 1001 -> "1001"; 90'000 ms -> "1m30s", 500 ms -> "500ms", 0 -> "0s". parse_*(format_*(x)) == x.
std::string format_cpu_quantity(int64_t millicores);
std::string format_memory_quantity(int64_t bytes);
std::string format_duration(std::chrono::milliseconds duration);

}  // namespace cortex::control
