// Internal to src/config (and its fuzz target): load_config with the config
// file's text given instead of read from disk, so that the whole path from
// TOML text to Config can be driven in memory, without a file per input.
#pragma once

#include <string>

#include "aicache/config.h"
#include "aicache/status.h"

namespace aicache::config_internal {

// A config file as load_config would have read it.
struct ConfigFileText {
  std::string name;  // names the file in errors and in Config::config_file
  std::string text;
};

// load_config(sources) with `file` as the config file: sources.config_file,
// $AICACHE_CONFIG and ./aicache.toml are not consulted. Everything else
// (environment, .env, overrides, checks, errors) is exactly load_config's.
Result<Config> load_config_with_text(const ConfigFileText& file, const ConfigSources& sources);

}  // namespace aicache::config_internal
