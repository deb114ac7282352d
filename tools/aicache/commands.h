// The `aicache` command line: get, set, del, ttl, stats, token, warm (transfer.h).
//
// Exit codes (what scripts branch on):
//   0  success
//   1  the key was not found (get, del, ttl); the token was not current
//      (token invalidate); warm: some lines were refused (the others loaded)
//   2  usage or configuration error: bad flags, unknown command, invalid key,
//      a reserved key ("ai_assistant:...", the typed entries) given to set or
//      del, bad TTL, malformed JSON, malformed .env or config file; token: an
//      unknown channel or app, a missing secret, or a configuration error
//      reported by the platform (bad secret, IP not whitelisted: 40164)
//   3  the store failed (unreachable, timeout, refused); token: the platform
//      failed (unreachable, busy, quota used up), or --force-refresh was
//      refused by the refresh limits ([tokens] min_refresh_interval,
//      forced_refreshes_per_day; the message says when to try again), which
//      hold for the CLI as for the service when they share a Redis store
// Messages go to stderr, values to stdout. No message ever contains a
// password or app secret: anything that looks like one from the configured
// Redis URL, REDIS_PASSWORD or the apps' secrets is replaced by "***" before
// printing.
#pragma once

#include <ostream>

namespace aicache::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitNotFound = 1,
  kExitUsage = 2,
  kExitFailure = 3,
};

// Parses `argv`, runs the command, and returns the process exit code.
// Never throws.
int run(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace aicache::cli
