// The `aicache` command line: get, set, del, ttl, stats.
//
// Exit codes (what scripts branch on):
//   0  success
//   1  the key was not found (get, del, ttl)
//   2  usage or configuration error: bad flags, unknown command, invalid key,
//      bad TTL, malformed JSON, malformed .env or config file
//   3  the store failed (unreachable, timeout, refused)
// Messages go to stderr, values to stdout. No message ever contains a
// password: anything that looks like one from the configured Redis URL or
// REDIS_PASSWORD is replaced by "***" before printing.
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
