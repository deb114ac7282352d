// The command line of `aicache`, parsed (CLI11 lives only in options.cc).
#pragma once

#include <ostream>
#include <string>
#include <variant>

namespace aicache::cli {

enum class Command { kGet, kSet, kDel, kTtl, kStats, kToken, kTokenInvalidate, kServe, kWarm, kExport, kHotKeys };

// What the command line asked for; values are not validated yet (keys,
// TTLs and JSON are checked by the commands, which know the rules).
struct Request {
  Command command = Command::kStats;

  // Global options; has_* tells "given, possibly empty" from "absent".
  std::string config_file;
  std::string url;
  std::string prefix;
  std::string server;  // --server URL: act through a running `aicache serve`
  bool has_config = false;
  bool has_url = false;
  bool has_prefix = false;
  bool has_server = false;

  std::string key;
  std::string value;  // set
  std::string ttl;    // set --ttl
  bool has_ttl = false;
  bool raw = false;   // get --raw
  bool json = false;  // set --json, stats --json, token --json

  // token [get] CHANNEL APP_KEY, token invalidate CHANNEL APP_KEY TOKEN
  std::string channel;
  std::string app_key;
  std::string token;
  bool force_refresh = false;  // token --force-refresh

  // warm FILE ("-": standard input)
  std::string file;
  // export --family F
  std::string family;

  // serve --listen HOST:PORT
  std::string listen;
  bool has_listen = false;
  bool no_access_log = false;  // serve --no-access-log
};

// Parses argv. --help and --version print to `out` and give exit code 0;
// a usage error prints to `err` and gives exit code 2. Otherwise the request.
std::variant<Request, int> parse_command_line(int argc, char** argv, std::ostream& out,
                                              std::ostream& err);

}  // namespace aicache::cli
