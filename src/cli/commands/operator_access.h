// What the control commands share: reaching the operator (starting it when needed), where the `cortex`
// binary is, and the settings an on-demand operator starts with.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "control/operator_client.h"

namespace cortex::cli {

// This executable's path (what the operator runs for replicas and for itself).
std::string self_executable();

// The gateway address an operator started on demand listens on: $CORTEX_GATEWAY_HOST (127.0.0.1) and
// $CORTEX_GATEWAY_PORT (8888), unless the flags of `cortex cluster up` say otherwise.
control::OperatorLaunch default_operator_launch();

// The operator of $CORTEX_HOME, started first when `start` and none runs.
control::OperatorClient operator_client(bool start);

// `-o, --output table|json` on a read command.
void add_output_option(CLI::App* command, std::string& output);

// "3s", "2m", "1h", "2d" since a unix time.
std::string age_since(int64_t unix_seconds);

}  // namespace cortex::cli
