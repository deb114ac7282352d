// Fuzz target: the config file (aicache.toml) through the whole of
// load_config, with the file's text given in memory
// (config_internal::load_config_with_text) and a fixed environment that holds
// the secrets some [[apps]] entries name with secret_env.
//
// Properties, beyond "no crash, no leak, no undefined behaviour, no
// exception":
//  - an error is kConfig, names the file and holds no control characters;
//  - no error message contains a secret: neither an environment value a
//    secret_env points at, nor (when distinctive enough to tell apart from
//    the messages' own words) a `secret = "..."` of the input;
//  - a success obeys the documented bounds: key_version >= 0,
//    default_timeout >= 1 s, memory bounds >= 1, [tokens] within 0..3600 s,
//    every app passes validate() and no two share a channel and app key.
#include <toml++/toml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/config.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "config/config_internal.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kFile = "fuzz.toml";

// What secret_env may name; the dictionary holds the names, not the values.
const std::map<std::string, std::string, std::less<>> kEnvironment = {
    {"WX_SECRET", "env-Secret-4f9c2e81d7a3"},
    {"WECOM_SECRET", "env-Secret-77b0c5e2aa41"},
    {"DING_SECRET", "env-Secret-0d3e9f6b1c58"},
    {"EMPTY_SECRET", ""},
};

// `secret = "..."` values of the input, as toml++ reads them.
void collect_secrets(const toml::node& node, std::vector<std::string>& out) {
  if (const auto* table = node.as_table()) {
    for (auto&& [key, value] : *table) {
      if (key.str() == "secret" && value.is_string()) out.push_back(value.as_string()->get());
      collect_secrets(value, out);
    }
  } else if (const auto* array = node.as_array()) {
    for (const auto& element : *array) collect_secrets(element, out);
  }
}

// A secret that cannot be mistaken for the messages' own words, positions or
// quoted non-secret values: long, with digits and capitals, no ':', '[',
// quote or space, and not also written elsewhere in the input.
bool distinctive(std::string_view secret, std::string_view input) {
  if (secret.size() < 20) return false;
  if (secret.find_first_of(":[\"' ") != std::string_view::npos) return false;
  const auto digits =
      std::count_if(secret.begin(), secret.end(), [](char c) { return c >= '0' && c <= '9'; });
  const auto capitals =
      std::count_if(secret.begin(), secret.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  if (digits < 3 || capitals < 1) return false;
  const auto first = input.find(secret);
  return first == std::string_view::npos || input.find(secret, first + 1) == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  aicache::ConfigSources sources;
  sources.dotenv = "";  // no .env: the input is the only file
  sources.environment = kEnvironment;
  auto config = aicache::config_internal::load_config_with_text(
      {std::string(kFile), std::string(text)}, sources);

  if (!config) {
    const std::string& message = config.error().message;
    check(config.error().code == aicache::ErrorCode::kConfig);
    check(message.find(kFile) != std::string::npos);
    // Errors end up in logs and terminals: no raw control bytes (a TOML key
    // or string may hold any, through escapes).
    for (char c : message) check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    for (const auto& [name, value] : kEnvironment) {
      check(value.empty() || text.find(value) != std::string_view::npos ||
            message.find(value) == std::string::npos);
    }
    std::vector<std::string> secrets;
    try {
      collect_secrets(toml::parse(text, kFile), secrets);
    } catch (const toml::parse_error&) {
      // Not TOML: load_config said so, and there is no secret to look for.
    }
    for (const std::string& secret : secrets) {
      if (distinctive(secret, text)) check(message.find(secret) == std::string::npos);
    }
    return 0;
  }

  check(config->config_file && config->config_file->string() == kFile);
  check(config->key_version >= 0);
  check(config->default_timeout.count() >= 1);
  check(config->memory_max_bytes >= 1 && config->memory_max_entries >= 1);
  check(config->token_refresh_margin.count() >= 0 && config->token_refresh_margin.count() <= 3600);
  check(config->token_refresh_lead.count() >= 0 && config->token_refresh_lead.count() <= 3600);
  for (std::size_t i = 0; i < config->apps.size(); ++i) {
    const aicache::AppCredentials& app = config->apps[i];
    check(aicache::validate(app).has_value());
    check(!app.secret.empty());
    for (std::size_t j = 0; j < i; ++j) {
      check(config->apps[j].channel != app.channel ||
            aicache::TokenManager::app_key(config->apps[j]) != aicache::TokenManager::app_key(app));
    }
  }
  return 0;
}
