// load_config: merges command-line overrides, the environment, .env, the
// config file and defaults (see config.h for the contract).
//
// Every value is remembered with where it came from, so an error names the
// layer and, for files, the line: "environment REDIS_PORT: ...",
// ".env:4: AICACHE_KEY_VERSION: ...", "aicache.toml:3:15: key_version ...".
// Values of settings that may hold a secret are never quoted in errors.

#include "aicache/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "aicache/keys.h"
#include "aicache/log.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "config/config_internal.h"
#include "config/dotenv_internal.h"

extern char** environ;  // NOLINT: POSIX, not declared by any C++ header

namespace aicache {
namespace {

namespace fs = std::filesystem;
using EnvMap = std::map<std::string, std::string, std::less<>>;

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
// 100 years. Far beyond any cache's need, and small enough that no store's
// deadline arithmetic (nanoseconds since boot in the memory store) overflows.
constexpr std::int64_t kMaxTimeoutSeconds = 100LL * 365 * 24 * 3600;

// One value as found in one layer.
struct Setting {
  // "environment REDIS_PORT", ".env:4: REDIS_PORT", "aicache.toml:3:15: key_version".
  std::string label;
  bool from_file = false;               // the TOML file: typed values
  std::string name;                     // the environment name
  std::string text;                     // string values
  std::optional<std::int64_t> integer;  // TOML integers
};

// "label: what" for environment-like layers, "label what" for the TOML file,
// whose label ends with the key name: "aicache.toml:3:15: key_version must ...".
Error setting_error(const Setting& s, std::string_view what) {
  return Error{ErrorCode::kConfig, s.from_file ? fmt::format("{} {}", s.label, what)
                                               : fmt::format("{}: {}", s.label, what)};
}

bool may_hold_secret(std::string_view name) {
  for (std::string_view word : {"PASSWORD", "SECRET", "TOKEN", "URL", "CREDENTIAL"}) {
    if (name.find(word) != std::string_view::npos) return true;
  }
  return false;
}

// How much of an input an error message quotes: enough to recognise it.
constexpr std::size_t kShownBytes = 40;

// The value for an error message: quoted when harmless, else a description.
std::string shown_value(const Setting& s) {
  if (may_hold_secret(s.name)) return "the value";
  return "\"" + printable(s.text, kShownBytes) + "\"";
}

// The layers, highest precedence first.
class Layers {
 public:
  Layers(const EnvMap& overrides, const EnvMap& environment,
         const config_internal::DotenvEntries& dotenv, std::string dotenv_name,
         std::map<std::string, Setting, std::less<>> file)
      : overrides_(overrides),
        environment_(environment),
        dotenv_(dotenv),
        dotenv_name_(std::move(dotenv_name)),
        file_(std::move(file)) {}

  static constexpr int kCount = 4;

  // The value of `name` in layer `layer` (0 = overrides ... 3 = file).
  std::optional<Setting> in_layer(int layer, std::string_view name) const {
    switch (layer) {
      case 0:
        return from_env_map(overrides_, "override", name);
      case 1:
        return from_env_map(environment_, "environment", name);
      case 2: {
        auto it = dotenv_.find(name);
        if (it == dotenv_.end()) return std::nullopt;
        return Setting{fmt::format("{}:{}: {}", dotenv_name_, it->second.line, name), false,
                       std::string(name), it->second.value, std::nullopt};
      }
      default: {
        auto it = file_.find(name);
        if (it == file_.end()) return std::nullopt;
        return it->second;
      }
    }
  }

  // The value of `name` from the highest layer that has it.
  std::optional<Setting> find(std::string_view name) const {
    for (int layer = 0; layer < kCount; ++layer) {
      if (auto s = in_layer(layer, name)) return s;
    }
    return std::nullopt;
  }

 private:
  static std::optional<Setting> from_env_map(const EnvMap& map, std::string_view what,
                                             std::string_view name) {
    auto it = map.find(name);
    if (it == map.end()) return std::nullopt;
    return Setting{fmt::format("{} {}", what, name), false, std::string(name), it->second,
                   std::nullopt};
  }

  const EnvMap& overrides_;
  const EnvMap& environment_;
  const config_internal::DotenvEntries& dotenv_;
  std::string dotenv_name_;
  std::map<std::string, Setting, std::less<>> file_;
};

// A whole-string decimal integer in [min, max].
Result<std::int64_t> integer_value(const Setting& s, std::int64_t min, std::int64_t max) {
  std::int64_t n = 0;
  if (s.integer) {
    n = *s.integer;
  } else {
    const char* first = s.text.data();
    const char* last = first + s.text.size();
    auto [end, ec] = std::from_chars(first, last, n);
    if (s.text.empty() || end != last || ec == std::errc::invalid_argument) {
      return std::unexpected(setting_error(s, fmt::format("{} is not an integer", shown_value(s))));
    }
    if (ec == std::errc::result_out_of_range) {
      return std::unexpected(setting_error(s, fmt::format("{} is out of range", shown_value(s))));
    }
  }
  if (n < min || n > max) {
    std::string rule;
    if (max <= 65535) {
      rule = fmt::format("between {} and {}", min, max);
    } else if (n > max) {
      rule = fmt::format("at most {}", max);
    } else if (min == 1) {
      rule = "> 0";
    } else {
      rule = fmt::format(">= {}", min);
    }
    return std::unexpected(setting_error(s, fmt::format("must be {} (got {})", rule, n)));
  }
  return n;
}

Result<std::string> read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  // Read in blocks: the istreambuf_iterator form trips GCC 12's
  // -Wnull-dereference inside libstdc++.
  std::string text;
  char block[16384];
  while (in.read(block, sizeof block) || in.gcount() > 0) {
    text.append(block, static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) {
    return make_error(ErrorCode::kConfig, fmt::format("{}: cannot read", path.string()));
  }
  return text;
}

std::string position(std::string_view file, const toml::source_region& where) {
  return fmt::format("{}:{}:{}", file, where.begin.line, where.begin.column);
}

// What [store] may hold: the TOML key, its environment name, and its type.
struct StoreKey {
  std::string_view key;
  std::string_view env_name;
  bool integer;
  std::int64_t min;  // integers only
  std::int64_t max;
};

constexpr StoreKey kStoreKeys[] = {
    {"url", "REDIS_URL", false, 0, 0},
    {"key_prefix", "AICACHE_KEY_PREFIX", false, 0, 0},
    {"key_version", "AICACHE_KEY_VERSION", true, 0, kInt64Max},
    {"default_timeout", "AICACHE_DEFAULT_TIMEOUT", true, 1, kMaxTimeoutSeconds},
    {"memory_max_bytes", "AICACHE_MEMORY_MAX_BYTES", true, 1, kInt64Max},
    {"memory_max_entries", "AICACHE_MEMORY_MAX_ENTRIES", true, 1, kInt64Max},
};

// One [[apps]] entry as read from the file; the secret of a secret_env entry
// is looked up once the merged environment is known.
struct FileApp {
  AppCredentials app;
  std::string where;             // the entry: "aicache.toml:7:1"
  std::string secret_env;        // the variable's name, or empty
  std::string secret_env_where;  // its value: "aicache.toml:9:14"
};

// What the config file holds.
struct FileContents {
  std::map<std::string, Setting, std::less<>> settings;  // [store], by environment name
  std::vector<FileApp> apps;
  std::optional<std::int64_t> refresh_margin;  // [tokens]
  std::optional<std::int64_t> refresh_lead;
  std::optional<std::int64_t> min_refresh_interval;
  std::optional<std::int64_t> forced_refreshes_per_day;
};

// A string as an error message may show it: quoted, at most 40 bytes,
// control characters replaced. Only for values that cannot be secrets.
std::string shown(std::string_view text) {
  return shown_value(Setting{{}, false, {}, std::string(text), std::nullopt});
}

bool is_env_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_';
    if (!ok) return false;
  }
  return true;
}

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The keys of one [[apps]] entry.
constexpr std::string_view kAppKeys[] = {"channel", "app_id", "agent_id", "secret",
                                         "secret_env", "api", "base_url"};

// Reads one [[apps]] entry: shapes, types and the rules of its channel. The
// secret itself is never quoted; every other value is harmless to show.
Result<FileApp> read_app(std::string_view file, const toml::table& table) {
  FileApp out;
  out.where = position(file, table.source());
  auto error = [&](const toml::source_region& where, std::string_view what) {
    return make_error(ErrorCode::kConfig, fmt::format("{}: {}", position(file, where), what));
  };

  // Every value, by key; all keys but agent_id are strings.
  std::map<std::string_view, const toml::node*> values;
  for (auto&& [key, node] : table) {
    const std::string_view* known = nullptr;
    for (const auto& k : kAppKeys) {
      if (k == key.str()) known = &k;
    }
    if (known == nullptr) {
      return error(key.source(), fmt::format("unknown key {} in [[apps]]", shown(key.str())));
    }
    if (*known == "agent_id") {
      if (!node.is_string() && !node.is_integer()) {
        return error(node.source(), "agent_id must be a string of digits or an integer");
      }
    } else if (!node.is_string()) {
      return error(node.source(), fmt::format("{} must be a string", *known));
    }
    values.emplace(*known, &node);
  }
  auto text = [&](std::string_view key) -> std::optional<std::string> {
    auto it = values.find(key);
    if (it == values.end()) return std::nullopt;
    if (const auto* str = it->second->as_string()) return str->get();
    return std::nullopt;
  };
  auto where = [&](std::string_view key) { return values.at(key)->source(); };

  // channel
  const auto channel = text("channel");
  if (!channel) return error(table.source(), "[[apps]] entry needs a channel");
  const auto parsed_channel = parse_channel(*channel);
  if (!parsed_channel) {
    return error(where("channel"), fmt::format("channel {} is unknown (wechat, wecom or dingtalk)",
                                               shown(*channel)));
  }
  out.app.channel = *parsed_channel;

  // app_id: an identifier, as it becomes part of the token's key.
  const auto app_id = text("app_id");
  if (!app_id) return error(table.source(), "[[apps]] entry needs an app_id");
  if (auto ok = validate_key_part(*app_id, "app_id"); !ok) {
    return error(where("app_id"), ok.error().message);
  }
  out.app.app_id = *app_id;

  // agent_id: WeCom's application, required there and only there.
  if (values.contains("agent_id")) {
    if (out.app.channel != Channel::kWeCom) {
      return error(where("agent_id"), "agent_id is for wecom apps only");
    }
    const toml::node& node = *values.at("agent_id");
    if (const auto* n = node.as_integer()) {
      if (n->get() < 0) return error(node.source(), "agent_id must not be negative");
      out.app.agent_id = std::to_string(n->get());
    } else {
      out.app.agent_id = node.as_string()->get();
      if (!all_digits(out.app.agent_id) || out.app.agent_id.size() > 20) {
        return error(node.source(), fmt::format("agent_id {} must be digits (the AgentId)",
                                                shown(out.app.agent_id)));
      }
    }
  } else if (out.app.channel == Channel::kWeCom) {
    return error(table.source(), "wecom app needs an agent_id (the application's AgentId)");
  }

  // secret or secret_env: exactly one. The secret's value is never shown.
  const auto secret = text("secret");
  const auto secret_env = text("secret_env");
  if (secret && secret_env) {
    return error(where("secret_env"), "secret and secret_env are exclusive: give one");
  }
  if (!secret && !secret_env) {
    return error(table.source(), "[[apps]] entry needs a secret or a secret_env");
  }
  if (secret) {
    if (secret->empty()) return error(where("secret"), "secret is empty");
    out.app.secret = *secret;
  } else {
    if (!is_env_name(*secret_env)) {
      // Not quoted: it may be the secret itself, pasted in by mistake.
      return error(where("secret_env"),
                   "secret_env is not a variable name ([A-Za-z_][A-Za-z0-9_]*); it names the "
                   "variable that holds the secret");
    }
    out.secret_env = *secret_env;
    out.secret_env_where = position(file, where("secret_env"));
  }

  // api: the channel's flavours.
  if (const auto api = text("api")) {
    bool ok = false;
    std::string_view choices;
    switch (out.app.channel) {
      case Channel::kWeChat:
        ok = *api == "stable" || *api == "plain";
        choices = "wechat: stable or plain";
        break;
      case Channel::kDingTalk:
        ok = *api == "oauth2" || *api == "legacy";
        choices = "dingtalk: oauth2 or legacy";
        break;
      case Channel::kWeCom:
        choices = "wecom has one token api; leave api out";
        break;
    }
    if (!ok) return error(where("api"), fmt::format("api {} is unknown ({})", shown(*api), choices));
    out.app.api = *api;
  }

  // base_url: http(s), no query; a trailing slash is dropped. Not shown, as a
  // proxy URL may carry credentials.
  if (auto base_url = text("base_url")) {
    while (base_url->ends_with('/')) base_url->pop_back();
    const bool http = base_url->starts_with("http://") || base_url->starts_with("https://");
    const std::size_t host = base_url->find("://") + 3;
    if (!http || base_url->size() <= host) {
      return error(where("base_url"), "base_url must be http://host[:port][/path] or https://...");
    }
    if (base_url->find_first_of("?# \t\r\n") != std::string::npos) {
      return error(where("base_url"), "base_url must not hold a query, fragment or spaces");
    }
    out.app.base_url = std::move(*base_url);
  }
  return out;
}

// [[apps]]: every entry, no two with the same channel and app key.
Result<std::vector<FileApp>> read_apps(std::string_view file, const toml::array& array) {
  std::vector<FileApp> apps;
  for (const toml::node& node : array) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: apps must be an array of tables ([[apps]])",
                                    position(file, node.source())));
    }
    auto app = read_app(file, *table);
    if (!app) return std::unexpected(app.error());
    const std::string key = TokenManager::app_key(app->app);
    for (const FileApp& earlier : apps) {
      if (earlier.app.channel == app->app.channel && TokenManager::app_key(earlier.app) == key) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: duplicate app {}/{} (first at {})", app->where,
                                      to_string(app->app.channel), key, earlier.where));
      }
    }
    apps.push_back(std::move(*app));
  }
  return apps;
}

// [tokens]: refresh_margin, refresh_lead, min_refresh_interval,
// forced_refreshes_per_day.
Status read_tokens(std::string_view file, const toml::table& table, FileContents& out) {
  for (auto&& [key, value] : table) {
    std::optional<std::int64_t>* target = nullptr;
    // Margins: at most an hour, half a token's life; more would refresh
    // continually. The interval: at most a day. Forced refreshes: at most
    // WeChat's own 20 a day; more would only move the refusal upstream.
    std::int64_t max = 3600;
    const char* unit = "(seconds)";
    if (key.str() == "refresh_margin") target = &out.refresh_margin;
    if (key.str() == "refresh_lead") target = &out.refresh_lead;
    if (key.str() == "min_refresh_interval") {
      target = &out.min_refresh_interval;
      max = 86400;
    }
    if (key.str() == "forced_refreshes_per_day") {
      target = &out.forced_refreshes_per_day;
      max = 20;
      unit = "(a count)";
    }
    if (target == nullptr) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: unknown key {} in [tokens]",
                                    position(file, key.source()), shown(key.str())));
    }
    Setting s{fmt::format("{}: {}", position(file, value.source()), key.str()),
              true,
              {},
              {},
              std::nullopt};
    const auto* n = value.as_integer();
    if (n == nullptr) {
      return std::unexpected(setting_error(s, fmt::format("must be an integer {}", unit)));
    }
    s.integer = n->get();
    auto checked = integer_value(s, 0, max);
    if (!checked) return std::unexpected(checked.error());
    *target = *checked;
  }
  return {};
}

// Looks up the secrets named by secret_env in the merged environment and
// checks each app as the token providers will. Messages name the variable,
// never its value.
Result<std::vector<AppCredentials>> resolve_apps(std::vector<FileApp> apps,
                                                 const EnvMap& environment) {
  std::vector<AppCredentials> out;
  out.reserve(apps.size());
  for (FileApp& entry : apps) {
    if (!entry.secret_env.empty()) {
      // The name is shown only when it looks like one (upper case): a
      // lower-case "name" may be a secret pasted in by mistake (WeChat's are
      // lower-case hex).
      const bool upper = std::none_of(entry.secret_env.begin(), entry.secret_env.end(),
                                      [](char c) { return c >= 'a' && c <= 'z'; });
      const std::string name = upper ? entry.secret_env : "the variable";
      const std::string_view note =
          upper ? "" : "; a name with lower-case letters is not shown, in case it is a secret";
      auto it = environment.find(entry.secret_env);
      if (it == environment.end()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: secret_env: {} is not set (environment or .env{})",
                                      entry.secret_env_where, name, note));
      }
      if (it->second.empty()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: secret_env: {} is empty{}", entry.secret_env_where,
                                      name, upper ? "" : " (" + std::string(note.substr(2)) + ")"));
      }
      entry.app.secret = it->second;
    }
    if (auto ok = validate(entry.app); !ok) {
      return make_error(ErrorCode::kConfig, fmt::format("{}: {}", entry.where, ok.error().message));
    }
    out.push_back(std::move(entry.app));
  }
  return out;
}

// Reads the TOML file: [store] into settings by environment name, [[apps]]
// and [tokens]. Unknown keys and wrong types are errors: a typo must not
// silently fall back to a default.
Result<FileContents> parse_config_file(std::string_view text, const std::string& name) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    // toml++ quotes the offending characters as they are.
    return make_error(ErrorCode::kConfig,
                      fmt::format("{}: {}", position(name, e.source()),
                                  printable(e.description(), std::string_view::npos)));
  }

  FileContents contents;
  auto& settings = contents.settings;
  for (auto&& [key, node] : root) {
    if (key.str() == "store") {
      const toml::table* store = node.as_table();
      if (store == nullptr) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: store must be a table", position(name, node.source())));
      }
      for (auto&& [skey, value] : *store) {
        const StoreKey* known = nullptr;
        for (const auto& k : kStoreKeys) {
          if (k.key == skey.str()) known = &k;
        }
        if (known == nullptr) {
          return make_error(ErrorCode::kConfig,
                            fmt::format("{}: unknown key '{}' in [store]",
                                        position(name, skey.source()),
                                        printable(skey.str(), kShownBytes)));
        }
        Setting s{fmt::format("{}: {}", position(name, value.source()), known->key),
                  true,
                  std::string(known->env_name),
                  {},
                  std::nullopt};
        if (known->integer) {
          const auto* n = value.as_integer();
          if (n == nullptr) return std::unexpected(setting_error(s, "must be an integer"));
          s.integer = n->get();
          if (auto ok = integer_value(s, known->min, known->max); !ok) {
            return std::unexpected(ok.error());
          }
        } else {
          const auto* str = value.as_string();
          if (str == nullptr) return std::unexpected(setting_error(s, "must be a string"));
          s.text = str->get();
        }
        settings.insert_or_assign(std::string(known->env_name), std::move(s));
      }
    } else if (key.str() == "server") {
      // Read by a later component; only its shape is checked here.
      if (!node.is_table()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: server must be a table", position(name, node.source())));
      }
    } else if (key.str() == "apps") {
      if (!node.is_array_of_tables()) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: apps must be an array of tables ([[apps]])",
                                      position(name, node.source())));
      }
      auto apps = read_apps(name, *node.as_array());
      if (!apps) return std::unexpected(apps.error());
      contents.apps = std::move(*apps);
    } else if (key.str() == "tokens") {
      const toml::table* tokens = node.as_table();
      if (tokens == nullptr) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: tokens must be a table", position(name, node.source())));
      }
      if (auto ok = read_tokens(name, *tokens, contents); !ok) return std::unexpected(ok.error());
    } else {
      return make_error(
          ErrorCode::kConfig,
          node.is_table()
              ? fmt::format("{}: unknown table [{}]", position(name, key.source()),
                            printable(key.str(), kShownBytes))
              : fmt::format("{}: unknown key '{}'", position(name, key.source()),
                            printable(key.str(), kShownBytes)));
    }
  }
  return contents;
}

Result<FileContents> read_config_file(const fs::path& path) {
  auto text = read_text_file(path);
  if (!text) return std::unexpected(text.error());
  return parse_config_file(*text, path.string());
}

EnvMap process_environment() {
  EnvMap env;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    std::string_view entry(*p);
    const std::size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

// RFC 3986 userinfo: everything but the unreserved characters is
// percent-encoded, which is always valid and leaves no ':' '@' '/' to confuse
// a URL parser.
std::string percent_encode(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

// The Redis URL from REDIS_HOST and its companions, which are looked up
// through every layer (as Django read them from the merged environment).
Result<std::string> url_from_host(const Setting& host, const Layers& layers) {
  for (char c : host.text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '/' || c == '@' || c == '?' || c == '#') {
      return std::unexpected(setting_error(host, "is not a valid host name"));
    }
  }
  std::string host_part = host.text;
  // An IPv6 address needs brackets in a URL.
  if (host_part.find(':') != std::string::npos && !host_part.starts_with('[')) {
    host_part = "[" + host_part + "]";
  }

  std::int64_t port = 6379;
  if (auto s = layers.find("REDIS_PORT")) {
    auto n = integer_value(*s, 1, 65535);
    if (!n) return std::unexpected(n.error());
    port = *n;
  }
  std::int64_t db = 0;
  if (auto s = layers.find("REDIS_DB")) {
    auto n = integer_value(*s, 0, kInt64Max);
    if (!n) return std::unexpected(n.error());
    db = *n;
  }
  std::string userinfo;
  if (auto s = layers.find("REDIS_PASSWORD"); s && !s->text.empty()) {
    userinfo = ":" + percent_encode(s->text) + "@";
  }
  return fmt::format("redis://{}{}:{}/{}", userinfo, host_part, port, db);
}

// The highest layer that mentions REDIS_URL or REDIS_HOST decides; within a
// layer the URL wins. Empty values count as not set.
Result<std::optional<std::string>> redis_target(const Layers& layers) {
  for (int layer = 0; layer < Layers::kCount; ++layer) {
    if (auto url = layers.in_layer(layer, "REDIS_URL"); url && !url->text.empty()) {
      return std::optional<std::string>(url->text);
    }
    if (auto host = layers.in_layer(layer, "REDIS_HOST"); host && !host->text.empty()) {
      auto url = url_from_host(*host, layers);
      if (!url) return std::unexpected(url.error());
      return std::optional<std::string>(std::move(*url));
    }
  }
  return std::optional<std::string>();
}

// Every name the configuration reads from the overrides, the environment and
// .env; Config::environment keeps these (and the apps' secret_env names) and
// nothing else. A new setting read by name must be added here.
constexpr std::string_view kEnvironmentNames[] = {
    // the store
    "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "AICACHE_CONFIG",
    "AICACHE_KEY_PREFIX", "AICACHE_KEY_VERSION", "AICACHE_DEFAULT_TIMEOUT",
    "AICACHE_MEMORY_MAX_BYTES", "AICACHE_MEMORY_MAX_ENTRIES",
    // the service and the CLI's client of it
    "AICACHE_SERVER", "AICACHE_API_TOKEN", "AICACHE_LISTEN", "AICACHE_ACCESS_LOG",
    "AICACHE_MAX_BODY_BYTES", "AICACHE_MAX_CONNECTIONS", "AICACHE_REQUEST_TIMEOUT",
    "AICACHE_ALLOWED_HOSTS",
};

// AICACHE_ALLOWED_HOSTS: names the service compares every Host header with.
constexpr std::size_t kMaxAllowedHosts = 64;

// The value is never shown; the source is (".env:3: AICACHE_API_TOKEN: ...").
Status check_api_token(const Setting& s) {
  if (auto ok = validate_api_token(s.text); !ok) {
    return std::unexpected(setting_error(s, ok.error().message));
  }
  return {};
}

// The service's settings (see Config::api_token and below), each checked and
// bounded, so no deadline or size arithmetic downstream can overflow.
Status read_service_settings(const Layers& layers, Config& config) {
  // Empty values count as not set, as for the Redis settings.
  auto find = [&](std::string_view name) -> std::optional<Setting> {
    auto s = layers.find(name);
    if (!s || s->text.empty()) return std::nullopt;
    return s;
  };
  if (auto s = find("AICACHE_API_TOKEN")) {
    if (auto ok = check_api_token(*s); !ok) return ok;
    config.api_token = s->text;
  }
  if (auto s = find("AICACHE_SERVER")) config.server = s->text;
  if (auto s = find("AICACHE_LISTEN")) config.listen = s->text;
  if (auto s = find("AICACHE_ACCESS_LOG")) {
    if (s->text == "on" || s->text == "1" || s->text == "true") {
      config.access_log = true;
    } else if (s->text == "off" || s->text == "0" || s->text == "false") {
      config.access_log = false;
    } else {
      return std::unexpected(setting_error(
          *s, fmt::format("{} is not on/off (on, off, 1, 0, true, false)", shown_value(*s))));
    }
  }
  struct Bounded {
    std::string_view name;
    std::int64_t max;
    std::optional<std::int64_t> value;
  };
  Bounded sizes[] = {{"AICACHE_MAX_BODY_BYTES", kMaxBodyBytesLimit, {}},
                     {"AICACHE_MAX_CONNECTIONS", kMaxConnectionsLimit, {}},
                     {"AICACHE_REQUEST_TIMEOUT", kMaxRequestTimeout.count(), {}}};
  for (Bounded& b : sizes) {
    if (auto s = find(b.name)) {
      auto n = integer_value(*s, 1, b.max);
      if (!n) return std::unexpected(n.error());
      b.value = *n;
    }
  }
  if (sizes[0].value) config.max_body_bytes = static_cast<std::size_t>(*sizes[0].value);
  if (sizes[1].value) config.max_connections = static_cast<std::size_t>(*sizes[1].value);
  if (sizes[2].value) config.request_timeout = std::chrono::seconds(*sizes[2].value);
  if (auto s = find("AICACHE_ALLOWED_HOSTS")) {
    std::string_view rest = s->text;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string_view name = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (name.empty()) continue;
      // A host name or address, optionally with a port: nothing a Host
      // header could not hold.
      const bool ok = name.size() <= 255 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
               c == ':' || c == '[' || c == ']' || c == '_';
      });
      if (!ok) {
        return std::unexpected(setting_error(
            *s, "is not a comma-separated list of host names (letters, digits, '.', '-', "
                "'_', ':', '[', ']')"));
      }
      if (config.allowed_hosts.size() == kMaxAllowedHosts) {
        return std::unexpected(setting_error(
            *s, fmt::format("lists more than {} host names", kMaxAllowedHosts)));
      }
      config.allowed_hosts.emplace_back(name);
    }
  }
  return {};
}

// True when `path` may be read by its group or by others. Unknown (stat
// fails): false, as there is nothing useful to say.
bool readable_by_others(const fs::path& path, fs::perms& perms) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec) return false;
  perms = status.permissions();
  return (perms & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none;
}

std::string secret_file_warning(const fs::path& path, std::string_view holds) {
  fs::perms perms = fs::perms::none;
  if (!readable_by_others(path, perms)) return {};
  return fmt::format("{} {} and is readable by group or others (mode {:04o}): other users of "
                     "this machine can read it; run: chmod 600 {}",
                     printable(path.string(), 200), holds,
                     static_cast<unsigned>(perms) & 0777u, printable(path.string(), 200));
}

// `given_file`, when set, is the config file's text (the file is then not
// looked for or read).
Result<Config> load(const ConfigSources& sources,
                    const config_internal::ConfigFileText* given_file) {
  const EnvMap environment = sources.environment ? *sources.environment : process_environment();

  // .env: absent is fine; present but unreadable or malformed is not.
  config_internal::DotenvEntries dotenv;
  const std::string dotenv_name = sources.dotenv.string();
  std::error_code ec;
  if (!sources.dotenv.empty() && fs::exists(sources.dotenv, ec)) {
    auto text = read_text_file(sources.dotenv);
    if (!text) return std::unexpected(text.error());
    auto parsed = config_internal::parse_dotenv_entries(*text, dotenv_name);
    if (!parsed) return std::unexpected(parsed.error());
    dotenv = std::move(*parsed);
  }

  // Which config file: --config, else $AICACHE_CONFIG, else ./aicache.toml.
  std::optional<fs::path> config_file;
  if (given_file != nullptr) {
    config_file = fs::path(given_file->name);
  } else if (sources.config_file && !sources.config_file->empty()) {
    config_file = *sources.config_file;
  } else {
    const Layers env_only(sources.overrides, environment, dotenv, dotenv_name, {});
    if (auto named = env_only.find("AICACHE_CONFIG"); named && !named->text.empty()) {
      config_file = fs::path(named->text);
    } else if (fs::exists("aicache.toml", ec)) {
      config_file = fs::path("aicache.toml");
    }
  }
  FileContents file;
  if (given_file != nullptr) {
    auto parsed = parse_config_file(given_file->text, given_file->name);
    if (!parsed) return std::unexpected(parsed.error());
    file = std::move(*parsed);
  } else if (config_file) {
    if (!fs::exists(*config_file, ec)) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("config file {}: no such file", config_file->string()));
    }
    auto read = read_config_file(*config_file);
    if (!read) return std::unexpected(read.error());
    file = std::move(*read);
  }

  const Layers layers(sources.overrides, environment, dotenv, dotenv_name,
                      std::move(file.settings));
  Config config;
  config.config_file = config_file;

  auto redis = redis_target(layers);
  if (!redis) return std::unexpected(redis.error());
  config.redis_url = std::move(*redis);

  const std::optional<Setting> prefix_setting = layers.find("AICACHE_KEY_PREFIX");
  if (prefix_setting) config.key_prefix = prefix_setting->text;

  // Integer settings: the winning value is checked, with its origin named.
  struct IntegerSetting {
    std::string_view name;
    std::int64_t min;
    std::int64_t max;
  };
  constexpr IntegerSetting kIntegers[] = {
      {"AICACHE_KEY_VERSION", 0, kInt64Max},
      {"AICACHE_DEFAULT_TIMEOUT", 1, kMaxTimeoutSeconds},
      {"AICACHE_MEMORY_MAX_BYTES", 1, kInt64Max},
      {"AICACHE_MEMORY_MAX_ENTRIES", 1, kInt64Max},
  };
  std::int64_t values[std::size(kIntegers)] = {
      config.key_version, config.default_timeout.count(),
      static_cast<std::int64_t>(config.memory_max_bytes),
      static_cast<std::int64_t>(config.memory_max_entries)};
  for (std::size_t i = 0; i < std::size(kIntegers); ++i) {
    if (auto s = layers.find(kIntegers[i].name)) {
      auto n = integer_value(*s, kIntegers[i].min, kIntegers[i].max);
      if (!n) return std::unexpected(n.error());
      values[i] = *n;
    }
  }
  config.key_version = values[0];
  config.default_timeout = std::chrono::seconds(values[1]);
  config.memory_max_bytes = static_cast<std::size_t>(values[2]);
  config.memory_max_entries = static_cast<std::size_t>(values[3]);

  // The prefix as the cache will take it (KeyMaker's rules), with its origin
  // named: a bad one is refused here, whichever command runs.
  if (prefix_setting) {
    if (auto keys = KeyMaker::create(config.key_prefix, config.key_version); !keys) {
      return std::unexpected(
          setting_error(*prefix_setting, fmt::format("invalid: {}", keys.error().message)));
    }
  }

  if (auto ok = read_service_settings(layers, config); !ok) return std::unexpected(ok.error());

  // The merged environment (the process environment over .env), of only the
  // names the configuration refers to: unrelated variables, secrets of other
  // programs among them, have no business in a Config.
  auto keep = [&](std::string_view name) {
    auto it = environment.find(name);
    if (it != environment.end()) {
      config.environment.insert_or_assign(std::string(name), it->second);
      return;
    }
    if (auto entry = dotenv.find(name); entry != dotenv.end()) {
      config.environment.insert_or_assign(std::string(name), entry->second.value);
    }
  };
  for (std::string_view name : kEnvironmentNames) keep(name);
  for (const FileApp& app : file.apps) {
    if (!app.secret_env.empty()) keep(app.secret_env);
  }

  // Files that hold a secret and that other users may read: warned about,
  // not refused (a container may run as a user whose group must read them).
  const bool inline_secret = std::any_of(file.apps.begin(), file.apps.end(),
                                         [](const FileApp& app) { return app.secret_env.empty(); });
  if (inline_secret && given_file == nullptr && config_file) {
    if (auto w = secret_file_warning(*config_file, "holds an app secret"); !w.empty()) {
      config.warnings.push_back(std::move(w));
    }
  }
  auto in_dotenv = [&](std::string_view name) {
    auto it = name.empty() ? dotenv.end() : dotenv.find(name);
    return it != dotenv.end() && !it->second.value.empty();
  };
  const bool dotenv_secret =
      in_dotenv("AICACHE_API_TOKEN") || in_dotenv("REDIS_PASSWORD") ||
      std::any_of(file.apps.begin(), file.apps.end(),
                  [&](const FileApp& app) { return in_dotenv(app.secret_env); });
  if (dotenv_secret) {
    if (auto w = secret_file_warning(sources.dotenv,
                                     "holds a secret (an app's secret_env variable, "
                                     "AICACHE_API_TOKEN or REDIS_PASSWORD)");
        !w.empty()) {
      config.warnings.push_back(std::move(w));
    }
  }

  // [tokens] and [[apps]], whose secret_env names are looked up in the merged
  // environment.
  if (file.refresh_margin) config.token_refresh_margin = std::chrono::seconds(*file.refresh_margin);
  if (file.refresh_lead) config.token_refresh_lead = std::chrono::seconds(*file.refresh_lead);
  if (file.min_refresh_interval) {
    config.token_min_refresh_interval = std::chrono::seconds(*file.min_refresh_interval);
  }
  if (file.forced_refreshes_per_day) {
    config.token_forced_refreshes_per_day = static_cast<int>(*file.forced_refreshes_per_day);
  }
  auto apps = resolve_apps(std::move(file.apps), config.environment);
  if (!apps) return std::unexpected(apps.error());
  config.apps = std::move(*apps);
  return config;
}

// No exception crosses the public API (allocation failure, a filesystem
// error thrown by a library).
Result<Config> load_catching(const ConfigSources& sources,
                             const config_internal::ConfigFileText* given_file) {
  try {
    return load(sources, given_file);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kConfig, fmt::format("cannot load configuration: {}", e.what()));
  }
}

}  // namespace

// An API token is the only thing between the network and every key and
// token of the service: it must not be guessable (a one-character token used
// to be accepted), and it travels in an HTTP header, so it is limited to
// characters that need no quoting anywhere.
Status validate_api_token(std::string_view token) {
  const bool charset_ok = std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("._~+/=-").find(c) != std::string_view::npos;
  });
  if (token.size() >= kMinApiTokenBytes && charset_ok) return {};
  const std::string why =
      token.size() < kMinApiTokenBytes
          ? fmt::format("is {} characters long; at least {} are needed", token.size(),
                        kMinApiTokenBytes)
          : std::string("holds a character outside A-Z a-z 0-9 . _ ~ + / = -");
  return make_error(ErrorCode::kConfig,
                    fmt::format("the API token {}; make one with: openssl rand -hex 32", why));
}

Result<Config> load_config(const ConfigSources& sources) {
  return load_catching(sources, nullptr);
}

namespace config_internal {

Result<Config> load_config_with_text(const ConfigFileText& file, const ConfigSources& sources) {
  return load_catching(sources, &file);
}

}  // namespace config_internal

}  // namespace aicache
