// `tianhe query`: the store's command (history, latest, counts as a table, JSON or CSV).
#pragma once

#include "runtime/extensions.h"

namespace tianhe::sinks::store {

/// Runs `tianhe query` (argv[1] is "query"); returns the exit status (2: usage error).
int cmd_query(int argc, char** argv, const runtime::CommandContext& context);

}  // namespace tianhe::sinks::store
