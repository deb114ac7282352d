// [[apps]] of the config file: each entry read and checked, then its secret
// resolved (config_internal, apps.h).

#include "config/apps.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aicache/keys.h"
#include "aicache/token_manager.h"
#include "config/setting.h"
#include "core/try.h"

namespace aicache::config_internal {
namespace {

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

}  // namespace

Result<std::vector<FileApp>> read_apps(std::string_view file, const toml::array& array) {
  std::vector<FileApp> apps;
  for (const toml::node& node : array) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("{}: apps must be an array of tables ([[apps]])",
                                    position(file, node.source())));
    }
    AICACHE_ASSIGN_OR_RETURN(FileApp app, read_app(file, *table));
    const std::string key = TokenManager::app_key(app.app);
    for (const FileApp& earlier : apps) {
      if (earlier.app.channel == app.app.channel && TokenManager::app_key(earlier.app) == key) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("{}: duplicate app {}/{} (first at {})", app.where,
                                      to_string(app.app.channel), key, earlier.where));
      }
    }
    apps.push_back(std::move(app));
  }
  return apps;
}

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

}  // namespace aicache::config_internal
