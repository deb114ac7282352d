// Internal to src/config: the [[apps]] of the config file, the token apps.
// Read in two steps: each entry is read and checked when the file is
// (read_apps), and the secrets named by secret_env are looked up once the
// merged environment is known (resolve_apps). The secret itself is never
// quoted in an error; every other value is harmless to show.
#pragma once

#include <toml++/toml.h>

#include <string>
#include <string_view>
#include <vector>

#include "aicache/status.h"
#include "aicache/token_provider.h"
#include "config/setting.h"

namespace aicache::config_internal {

// One [[apps]] entry as read from the file; the secret of a secret_env entry
// is looked up once the merged environment is known.
struct FileApp {
  AppCredentials app;
  std::string where;             // the entry: "aicache.toml:7:1"
  std::string secret_env;        // the variable's name, or empty
  std::string secret_env_where;  // its value: "aicache.toml:9:14"
};

// [[apps]] of `file`: every entry, shapes, types and the rules of its
// channel, no two with the same channel and app key.
Result<std::vector<FileApp>> read_apps(std::string_view file, const toml::array& array);

// Looks up the secrets named by secret_env in the merged environment and
// checks each app as the token providers will. Messages name the variable,
// never its value.
Result<std::vector<AppCredentials>> resolve_apps(std::vector<FileApp> apps,
                                                 const EnvMap& environment);

}  // namespace aicache::config_internal
