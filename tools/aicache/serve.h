// `aicache serve`: the HTTP service (include/aicache/server.h) over the
// configured store and apps, until SIGTERM or SIGINT.
#pragma once

#include "options.h"
#include "session.h"

namespace aicache::cli {

// Serves until a stop signal (exit 0) or until serving fails (exit 3, for a
// supervisor to restart it). REQUIRES: session.configure() succeeded without
// a service to act through.
int run_serve(Session& session, const Request& request);

}  // namespace aicache::cli
