#include "commands.h"

#include <fmt/format.h>

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "aicache/aicache.h"
#include "aicache/server.h"
#include "options.h"
#include "remote.h"

namespace aicache::cli {
namespace {

// Replaces every known secret in a message by "***". The library promises
// not to put secrets in messages; this is the second line of defence, as a
// leaked Redis password in a terminal or CI log cannot be taken back.
class Redactor {
 public:
  void add_url(std::string_view url) {
    // The userinfo as written (percent-encoded) ...
    const std::size_t scheme = url.find("://");
    if (scheme != std::string_view::npos) {
      std::string_view rest = url.substr(scheme + 3);
      rest = rest.substr(0, rest.find_first_of("/?#"));
      const std::size_t at = rest.rfind('@');
      if (at != std::string_view::npos) {
        const std::string_view userinfo = rest.substr(0, at);
        const std::size_t colon = userinfo.find(':');
        if (colon != std::string_view::npos) add(userinfo.substr(colon + 1));
      }
    }
    // ... and decoded.
    if (auto endpoint = parse_redis_url(url)) add(endpoint->password);
  }

  void add(std::string_view secret) {
    if (!secret.empty()) secrets_.emplace_back(secret);
  }

  std::string operator()(std::string message) const {
    for (const auto& secret : secrets_) {
      for (std::size_t pos = message.find(secret); pos != std::string::npos;
           pos = message.find(secret, pos + 3)) {
        message.replace(pos, secret.size(), "***");
      }
    }
    return message;
  }

 private:
  std::vector<std::string> secrets_;
};

int exit_code_for(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kConfig:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

// Everything a command needs once configuration and arguments are valid.
class Session {
 public:
  Session(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

  // Prints "aicache: {context}: {message}" and returns the exit code for it.
  int fail(std::string_view context, const Error& error) const {
    err_ << "aicache: " << redact_(fmt::format("{}: {}", context, error.message)) << '\n';
    return exit_code_for(error);
  }
  int usage(std::string_view message) const { return report(message, kExitUsage); }
  // Prints "aicache: {message}" and returns `exit_code`.
  int report(std::string_view message, int exit_code) const {
    err_ << "aicache: " << redact_(std::string(message)) << '\n';
    return exit_code;
  }

  // Loads the configuration and checks the key namespace; nothing is opened.
  int configure(const Request& request) {
    ConfigSources sources;
    if (request.has_url) {
      sources.overrides.insert_or_assign("REDIS_URL", request.url);
      redact_.add_url(request.url);
    }
    if (request.has_prefix)
      sources.overrides.insert_or_assign("AICACHE_KEY_PREFIX", request.prefix);
    if (request.has_config) sources.config_file = request.config_file;

    auto config = load_config(sources);
    if (!config) return fail("configuration", config.error());
    config_ = std::move(*config);
    if (config_.redis_url) redact_.add_url(*config_.redis_url);
    if (auto it = config_.environment.find("REDIS_PASSWORD"); it != config_.environment.end()) {
      redact_.add(it->second);
    }
    for (const AppCredentials& app : config_.apps) redact_.add(app.secret);
    if (config_.api_token) redact_.add(*config_.api_token);

    // --server, else AICACHE_SERVER (not for serve: it is the service).
    std::optional<std::string> server;
    if (request.has_server) {
      server = request.server;
    } else if (request.command != Command::kServe) {
      server = config_.server;
    }
    if (server) {
      redact_.add_url(*server);
      auto remote = RemoteClient::create(*server, config_.api_token.value_or(""));
      if (!remote) return usage(remote.error().message);
      remote_ = std::move(*remote);
      api_token_sent_ = config_.api_token.has_value();
      warn_if_token_in_clear(*server);
      // The service's key prefix applies; the local one is not checked.
      return kExitOk;
    }

    auto keys = KeyMaker::create(config_.key_prefix, config_.key_version);
    if (!keys) return fail("key prefix", keys.error());
    keys_ = std::move(*keys);
    return kExitOk;
  }

  // The API token goes in a header of every request: over http:// to
  // another machine anyone on the path can read it and then use the
  // service. Warned about, not refused (a trusted private network, a
  // TLS-terminating sidecar), on every run.
  void warn_if_token_in_clear(std::string_view server) const {
    if (!config_.api_token || !server.starts_with("http://")) return;
    const auto host = url_host(server);
    if (host && is_loopback_host(*host)) return;
    err_ << "aicache: warning: --server/AICACHE_SERVER is http:// to a host that is not "
            "loopback: the API token (AICACHE_API_TOKEN) travels in clear text; use https://\n";
  }

  // Logs the configuration's warnings (a secret file others may read); for
  // the commands that use the apps' secrets or the API token.
  void log_config_warnings() const {
    for (const std::string& warning : config_.warnings) {
      log_message(LogLevel::kWarning, redact_(warning));
    }
  }

  // The stored key for `key`, or an error printed (usage: exit 2).
  std::optional<std::string> stored_key(std::string_view key) const {
    auto stored = keys_->make(key);
    if (!stored) {
      fail("invalid key", stored.error());
      return std::nullopt;
    }
    return std::move(*stored);
  }

  // `errors_as_misses`: the service answers a miss while the store is down
  // (the library's default); the data commands report the outage instead, so
  // an operator sees exit code 3, not 1.
  int open(bool errors_as_misses = false) {
    auto store = open_store(config_);
    if (!store) return fail("cannot open the store", store.error());
    auto options = cache_options(config_);
    options.store_errors = errors_as_misses ? AssistantCacheOptions::StoreErrors::kTreatAsMiss
                                            : AssistantCacheOptions::StoreErrors::kReturnError;
    auto cache = AssistantCache::create(std::shared_ptr<Store>(std::move(*store)), options);
    if (!cache) return fail("cannot create the cache", cache.error());
    cache_ = std::move(*cache);
    return kExitOk;
  }

  // The token manager over the opened cache, with every configured app.
  // REQUIRES: open() succeeded.
  int open_tokens() {
    auto manager = open_token_manager(config_, cache_);
    if (!manager) return fail("cannot set up the token apps", manager.error());
    tokens_ = std::move(*manager);
    return kExitOk;
  }

  const Config& config() const { return config_; }
  // The running service to act through (--server / AICACHE_SERVER), or null.
  RemoteClient* remote() const { return remote_.get(); }
  bool api_token_sent() const { return api_token_sent_; }
  AssistantCache& cache() const { return *cache_; }
  TokenManager& tokens() const { return *tokens_; }
  const std::shared_ptr<AssistantCache>& shared_cache() const { return cache_; }
  std::shared_ptr<TokenManager> take_tokens() { return std::move(tokens_); }
  std::ostream& out() const { return out_; }
  std::ostream& err() const { return err_; }

 private:
  std::ostream& out_;
  std::ostream& err_;
  Redactor redact_;
  Config config_;
  std::optional<KeyMaker> keys_;
  std::unique_ptr<RemoteClient> remote_;
  bool api_token_sent_ = false;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;  // after cache_: it uses the cache
};

// Seconds for --ttl: digits only, so "-5", "5s" or "1e3" are refused rather
// than guessed at.
Result<Ttl> parse_ttl(std::string_view text) {
  // 100 years, as for AICACHE_DEFAULT_TIMEOUT: beyond it a store's deadline
  // arithmetic could overflow.
  constexpr std::int64_t kMaxSeconds = 100LL * 365 * 24 * 3600;
  std::int64_t seconds = 0;
  const char* first = text.data();
  const char* last = first + text.size();
  auto [end, ec] = std::from_chars(first, last, seconds);
  const bool digits_only = !text.empty() && text.front() != '-' && text.front() != '+';
  if (!digits_only || end != last || ec == std::errc::invalid_argument) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("--ttl: \"{}\" is not a non-negative integer number of seconds",
                                  text.substr(0, 40)));
  }
  if (ec == std::errc::result_out_of_range || seconds > kMaxSeconds) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("--ttl: at most {} seconds (100 years)", kMaxSeconds));
  }
  return Ttl(std::chrono::seconds(seconds));
}

int run_get(Session& session, const Request& request) {
  auto stored = session.stored_key(request.key);
  if (!stored) return kExitUsage;
  if (int rc = session.open(); rc != kExitOk) return rc;

  std::string text;
  if (request.raw) {
    // The bytes as stored, even if they are not JSON (written by another
    // program into a shared Redis).
    auto value = session.cache().get_text(request.key);
    if (value.failed()) return session.fail("get", value.error());
    if (!value) {
      session.err() << "aicache: " << request.key << ": not found\n";
      return kExitNotFound;
    }
    text = std::move(*value);
  } else {
    auto value = session.cache().get(request.key);
    if (value.failed()) return session.fail("get", value.error());
    if (!value) {
      session.err() << "aicache: " << request.key << ": not found\n";
      return kExitNotFound;
    }
    const JsonDocument& doc = *value;
    // A JSON string prints as the string itself, as an operator expects of
    // a token; anything else prints as its JSON text.
    const nlohmann::json& tree = doc.value();
    if (tree.is_string()) {
      text = tree.get<std::string>();
    } else {
      text = doc.text();
    }
  }
  session.out() << text << '\n';
  return kExitOk;
}

int run_set(Session& session, const Request& request) {
  auto stored = session.stored_key(request.key);
  if (!stored) return kExitUsage;

  Ttl ttl = Ttl::use_default();
  if (request.has_ttl) {
    auto parsed = parse_ttl(request.ttl);
    if (!parsed) return session.usage(parsed.error().message);
    ttl = *parsed;
  }
  JsonDocument document;
  if (request.json) {
    auto parsed = JsonDocument::parse(request.value);
    if (!parsed) return session.fail("--json: VALUE is not valid JSON", parsed.error());
    document = std::move(*parsed);
  } else {
    document = JsonDocument::string(request.value);
  }

  if (int rc = session.open(); rc != kExitOk) return rc;
  if (auto status = session.cache().set(request.key, document, ttl); !status) {
    return session.fail("set", status.error());
  }
  session.out() << "OK\n";
  return kExitOk;
}

int run_del(Session& session, const Request& request) {
  if (!session.stored_key(request.key)) return kExitUsage;
  if (int rc = session.open(); rc != kExitOk) return rc;
  auto removed = session.cache().remove(request.key);
  if (!removed) return session.fail("del", removed.error());
  if (!*removed) {
    session.err() << "aicache: " << request.key << ": not found\n";
    return kExitNotFound;
  }
  session.out() << "deleted\n";
  return kExitOk;
}

int run_ttl(Session& session, const Request& request) {
  if (!session.stored_key(request.key)) return kExitUsage;
  if (int rc = session.open(); rc != kExitOk) return rc;
  auto ttl = session.cache().ttl(request.key);
  if (!ttl) return session.fail("ttl", ttl.error());
  switch (ttl->state) {
    case KeyTtl::State::kMissing:
      session.err() << "missing\n";
      return kExitNotFound;
    case KeyTtl::State::kPersistent:
      session.out() << "never\n";
      return kExitOk;
    case KeyTtl::State::kExpiring:
      break;
  }
  // Rounded up: a key with 200 ms left still exists, so it must not read 0.
  const auto ms = ttl->remaining.count();
  session.out() << (ms + 999) / 1000 << '\n';
  return kExitOk;
}

int run_stats(Session& session, const Request& request) {
  if (int rc = session.open(); rc != kExitOk) return rc;
  auto stats = session.cache().stats();
  if (!stats) return session.fail("stats", stats.error());
  const StoreStats& s = stats->store;
  if (request.json) {
    nlohmann::ordered_json j;
    j["backend"] = s.backend;
    j["used_memory"] = s.used_memory_bytes;
    j["used_memory_human"] = s.used_memory_human;
    j["max_memory"] = s.max_memory_bytes;
    j["entries"] = s.entries;
    j["hits"] = s.hits;
    j["misses"] = s.misses;
    j["evictions"] = s.evictions;
    j["expirations"] = s.expirations;
    j["commands_processed"] = s.commands_processed;
    j["store_errors"] = stats->store_errors;
    j["details"] = nlohmann::ordered_json::object();
    for (const auto& [name, value] : s.details) j["details"][name] = value;
    // A detail from a server could hold invalid UTF-8; replace, never throw.
    session.out() << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return kExitOk;
  }
  std::ostream& out = session.out();
  out << "backend: " << s.backend << '\n'
      << "used_memory: " << s.used_memory_bytes << '\n'
      << "used_memory_human: " << s.used_memory_human << '\n'
      << "max_memory: " << s.max_memory_bytes << '\n'
      << "entries: " << s.entries << '\n'
      << "hits: " << s.hits << '\n'
      << "misses: " << s.misses << '\n'
      << "evictions: " << s.evictions << '\n'
      << "expirations: " << s.expirations << '\n'
      << "commands_processed: " << s.commands_processed << '\n'
      << "store_errors: " << stats->store_errors << '\n';
  for (const auto& [name, value] : s.details) out << name << ": " << value << '\n';
  return kExitOk;
}

// Text from the command line or a service for a message: at most 64 bytes,
// through the library's printable filter.
std::string printable(std::string_view text) { return aicache::printable(text, 64); }

// Checks CHANNEL and APP_KEY against the configuration before anything is
// opened: an unknown channel or app is a usage error (exit 2), and needs no
// store.
int check_token_app(const Session& session, const Request& request) {
  const auto channel = parse_channel(request.channel);
  if (!channel) {
    return session.usage(fmt::format("token: unknown channel '{}' (wechat, wecom or dingtalk)",
                                     printable(request.channel)));
  }
  std::string configured;
  for (const AppCredentials& app : session.config().apps) {
    const std::string key = TokenManager::app_key(app);
    if (app.channel == *channel && key == request.app_key) return kExitOk;
    configured += fmt::format("{}{}/{}", configured.empty() ? "" : ", ", to_string(app.channel),
                              key);
  }
  const auto& file = session.config().config_file;
  const std::string_view hint =
      *channel == Channel::kWeCom && request.app_key.find('.') == std::string::npos
          ? "; a wecom APP_KEY is CORP_ID.AGENT_ID"
          : "";
  return session.usage(fmt::format(
      "token: no {} app '{}' is configured ({}{})", to_string(*channel), printable(request.app_key),
      !file               ? std::string("no config file was found; apps are [[apps]] in aicache.toml")
      : configured.empty() ? fmt::format("{} has no [[apps]]", file->string())
                           : fmt::format("[[apps]] of {}: {}", file->string(), configured),
      hint));
}

int run_token(Session& session, const Request& request) {
  if (int rc = check_token_app(session, request); rc != kExitOk) return rc;
  if (int rc = session.open(); rc != kExitOk) return rc;
  if (int rc = session.open_tokens(); rc != kExitOk) return rc;

  auto token = request.force_refresh
                   ? session.tokens().refresh(request.channel, request.app_key,
                                              /*platform_force=*/true)
                   : session.tokens().get(request.channel, request.app_key);
  if (!token) {
    return session.fail(fmt::format("token {}/{}", request.channel, request.app_key),
                        token.error());
  }
  if (request.json) {
    nlohmann::ordered_json j;
    j["access_token"] = token->access_token;
    j["expires_in"] = token->expires_in.count();
    session.out() << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    session.out() << token->access_token << '\n';
  }
  return kExitOk;
}

int run_token_invalidate(Session& session, const Request& request) {
  if (int rc = check_token_app(session, request); rc != kExitOk) return rc;
  if (int rc = session.open(); rc != kExitOk) return rc;
  if (int rc = session.open_tokens(); rc != kExitOk) return rc;

  auto removed = session.tokens().invalidate(request.channel, request.app_key, request.token);
  if (!removed) {
    return session.fail(fmt::format("token invalidate {}/{}", request.channel, request.app_key),
                        removed.error());
  }
  if (!*removed) {
    // As ttl's "missing": the answer on stderr, exit 1.
    session.err() << "not current\n";
    return kExitNotFound;
  }
  session.out() << "invalidated\n";
  return kExitOk;
}

// --- Through a running service (--server URL / AICACHE_SERVER) -----------------------
//
// The same commands, output and exit codes as on a local store, over the
// service's HTTP API (include/aicache/server.h). Statuses map to exit codes:
// 200 → 0; 404 → 1 for a missing key, 2 for an unknown token app; 400, 413
// → 2 with the service's message; 401 → 2 (AICACHE_API_TOKEN missing or
// wrong); 502 with the platform's configuration error → 2 (as locally);
// 429 (a refresh beyond the refresh limits), 502, 503, 504, anything else and
// no connection at all → 3.

std::string kv_path(std::string_view key) { return "/v1/kv/" + percent_encode(key); }

std::string token_path(const Request& request, std::string_view action = {}) {
  std::string path = fmt::format("/v1/tokens/{}/{}", percent_encode(request.channel),
                                 percent_encode(request.app_key));
  if (!action.empty()) path += fmt::format("/{}", action);
  return path;
}

// The error object of the service's answer ({"error": {"code", "message"}}),
// or null if the body is not one.
nlohmann::json service_error(const HttpReply& reply) {
  auto body = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return nullptr;
  auto error = body.find("error");
  if (error == body.end() || !error->is_object()) return nullptr;
  return *error;
}

std::string service_message(const HttpReply& reply) {
  const nlohmann::json error = service_error(reply);
  if (error.is_object()) {
    auto message = error.find("message");
    // The service filters what it sends, but this process writes to a
    // terminal: filter again.
    if (message != error.end() && message->is_string()) {
      return aicache::printable(message->get_ref<const std::string&>(), 512);
    }
  }
  if (reply.body.empty()) return "no message";
  return printable(reply.body);
}

std::string service_code(const HttpReply& reply) {
  const nlohmann::json error = service_error(reply);
  if (error.is_object()) {
    auto code = error.find("code");
    if (code != error.end() && code->is_string()) return code->get<std::string>();
  }
  return {};
}

// A reply that is not the command's answer: prints why, returns the exit code.
int remote_failure(const Session& session, std::string_view context, const HttpReply& reply) {
  const std::string& url = session.remote()->url();
  switch (reply.status) {
    case 400:
    case 404:
    case 413:
      return session.usage(fmt::format("{}: {}", context, service_message(reply)));
    case 401:
      return session.usage(
          session.api_token_sent()
              ? fmt::format("{}: the service at {} refused the API token in AICACHE_API_TOKEN",
                            context, url)
              : fmt::format("{}: the service at {} needs AICACHE_API_TOKEN", context, url));
    case 502:
      // The platform refused the app's setup (bad secret, IP not allowed):
      // a configuration error, exit 2 as on a local store.
      if (service_code(reply) == "upstream_config") {
        return session.usage(fmt::format("{}: {}", context, service_message(reply)));
      }
      break;
    default:
      break;
  }
  return session.report(fmt::format("{}: the service at {} answered HTTP {}: {}", context, url,
                                    reply.status, service_message(reply)),
                        kExitFailure);
}

// The JSON answer of a 200, or an error printed (exit 3: not the service).
std::optional<nlohmann::json> answer_json(const Session& session, std::string_view context,
                                          const HttpReply& reply) {
  auto body = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    session.report(fmt::format("{}: the service at {} answered with something other than JSON "
                               "(is it 'aicache serve'?)",
                               context, session.remote()->url()),
                   kExitFailure);
    return std::nullopt;
  }
  return body;
}

int remote_not_found(const Session& session, const Request& request) {
  session.err() << "aicache: " << printable(request.key) << ": not found\n";
  return kExitNotFound;
}

int remote_get(Session& session, const Request& request) {
  auto reply = session.remote()->get(kv_path(request.key));
  if (!reply) return session.fail("get", reply.error());
  if (reply->status == 404) return remote_not_found(session, request);
  if (reply->status != 200) return remote_failure(session, "get", *reply);
  if (request.raw) {
    // The JSON text the service answered.
    session.out() << reply->body << '\n';
    return kExitOk;
  }
  auto value = answer_json(session, "get", *reply);
  if (!value) return kExitFailure;
  // As locally: a JSON string prints as the string itself.
  if (value->is_string()) {
    session.out() << value->get_ref<const std::string&>() << '\n';
  } else {
    session.out() << reply->body << '\n';
  }
  return kExitOk;
}

int remote_set(Session& session, const Request& request) {
  std::string path = kv_path(request.key);
  if (request.has_ttl) {
    auto parsed = parse_ttl(request.ttl);
    if (!parsed) return session.usage(parsed.error().message);
    path += fmt::format(
        "?ttl={}", std::chrono::duration_cast<std::chrono::seconds>(parsed->duration()).count());
  }
  std::string body;
  if (request.json) {
    auto parsed = JsonDocument::parse(request.value);
    if (!parsed) return session.fail("--json: VALUE is not valid JSON", parsed.error());
    body = std::string(parsed->text());
  } else {
    body = JsonDocument::string(request.value).text();
  }
  auto reply = session.remote()->put(path, body);
  if (!reply) return session.fail("set", reply.error());
  if (reply->status != 200) return remote_failure(session, "set", *reply);
  session.out() << "OK\n";
  return kExitOk;
}

int remote_del(Session& session, const Request& request) {
  auto reply = session.remote()->del(kv_path(request.key));
  if (!reply) return session.fail("del", reply.error());
  if (reply->status == 404) return remote_not_found(session, request);
  if (reply->status != 200) return remote_failure(session, "del", *reply);
  auto answer = answer_json(session, "del", *reply);
  if (!answer) return kExitFailure;
  if (!answer->is_object() || !answer->value("deleted", false)) {
    return remote_not_found(session, request);
  }
  session.out() << "deleted\n";
  return kExitOk;
}

int remote_ttl(Session& session, const Request& request) {
  // The service reports the TTL in X-Aicache-Ttl on a HEAD of the key.
  auto reply = session.remote()->head(kv_path(request.key));
  if (!reply) return session.fail("ttl", reply.error());
  if (reply->status == 404) {
    session.err() << "missing\n";
    return kExitNotFound;
  }
  if (reply->status != 200) return remote_failure(session, "ttl", *reply);
  const auto ttl = reply->header("X-Aicache-Ttl");
  std::uint64_t seconds = 0;
  if (ttl && *ttl != "never") {
    auto [end, ec] = std::from_chars(ttl->data(), ttl->data() + ttl->size(), seconds);
    if (ec != std::errc() || end != ttl->data() + ttl->size()) seconds = 0;
  }
  if (!ttl || (*ttl != "never" && seconds == 0)) {
    return session.report(fmt::format("ttl: the service at {} does not report TTLs "
                                      "(no valid X-Aicache-Ttl header; is it an older version?)",
                                      session.remote()->url()),
                          kExitFailure);
  }
  if (*ttl == "never") {
    session.out() << "never\n";
  } else {
    session.out() << seconds << '\n';
  }
  return kExitOk;
}

int remote_stats(Session& session, const Request& request) {
  auto reply = session.remote()->get("/v1/stats");
  if (!reply) return session.fail("stats", reply.error());
  if (reply->status != 200) return remote_failure(session, "stats", *reply);
  auto answer = answer_json(session, "stats", *reply);
  if (!answer) return kExitFailure;
  const nlohmann::json* store = nullptr;
  if (answer->is_object()) {
    auto it = answer->find("store");
    if (it != answer->end() && it->is_object()) store = &*it;
  }
  if (!store) {
    return session.report(
        fmt::format("stats: the service at {} cannot reach its store", session.remote()->url()),
        kExitFailure);
  }
  // The same figures, names and order as on a local store.
  auto number = [](const nlohmann::json& j, const char* name) -> std::uint64_t {
    auto it = j.find(name);
    return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
  };
  auto text = [](const nlohmann::json& j, const char* name) -> std::string {
    auto it = j.find(name);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::uint64_t store_errors = 0;
  if (auto cache = answer->find("cache"); cache != answer->end() && cache->is_object()) {
    store_errors = number(*cache, "store_errors");
  }
  std::vector<std::pair<std::string, std::string>> details;
  if (auto it = store->find("details"); it != store->end() && it->is_object()) {
    for (const auto& [name, value] : it->items()) {
      details.emplace_back(name, value.is_string() ? value.get<std::string>() : value.dump());
    }
  }
  if (request.json) {
    nlohmann::ordered_json j;
    j["backend"] = text(*store, "backend");
    j["used_memory"] = number(*store, "used_memory_bytes");
    j["used_memory_human"] = text(*store, "used_memory_human");
    j["max_memory"] = number(*store, "max_memory_bytes");
    j["entries"] = number(*store, "entries");
    j["hits"] = number(*store, "hits");
    j["misses"] = number(*store, "misses");
    j["evictions"] = number(*store, "evictions");
    j["expirations"] = number(*store, "expirations");
    j["commands_processed"] = number(*store, "commands_processed");
    j["store_errors"] = store_errors;
    j["details"] = nlohmann::ordered_json::object();
    for (const auto& [name, value] : details) j["details"][name] = value;
    session.out() << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return kExitOk;
  }
  std::ostream& out = session.out();
  out << "backend: " << text(*store, "backend") << '\n'
      << "used_memory: " << number(*store, "used_memory_bytes") << '\n'
      << "used_memory_human: " << text(*store, "used_memory_human") << '\n'
      << "max_memory: " << number(*store, "max_memory_bytes") << '\n'
      << "entries: " << number(*store, "entries") << '\n'
      << "hits: " << number(*store, "hits") << '\n'
      << "misses: " << number(*store, "misses") << '\n'
      << "evictions: " << number(*store, "evictions") << '\n'
      << "expirations: " << number(*store, "expirations") << '\n'
      << "commands_processed: " << number(*store, "commands_processed") << '\n'
      << "store_errors: " << store_errors << '\n';
  for (const auto& [name, value] : details) out << name << ": " << value << '\n';
  return kExitOk;
}

// The channel is checked here, as locally; the app is the service's to know.
int remote_check_channel(const Session& session, const Request& request) {
  if (!parse_channel(request.channel)) {
    return session.usage(fmt::format("token: unknown channel '{}' (wechat, wecom or dingtalk)",
                                     printable(request.channel)));
  }
  return kExitOk;
}

int remote_token(Session& session, const Request& request) {
  if (int rc = remote_check_channel(session, request); rc != kExitOk) return rc;
  const std::string context =
      fmt::format("token {}/{}", request.channel, printable(request.app_key));
  // As locally: the platform is asked to revoke the current token too.
  auto reply = request.force_refresh
                   ? session.remote()->post(token_path(request, "refresh?force_refresh=true"), "")
                                     : session.remote()->get(token_path(request));
  if (!reply) return session.fail(context, reply.error());
  if (reply->status != 200) return remote_failure(session, context, *reply);
  auto answer = answer_json(session, context, *reply);
  if (!answer) return kExitFailure;
  auto token = answer->is_object() ? answer->find("access_token") : answer->end();
  if (!answer->is_object() || token == answer->end() || !token->is_string()) {
    return session.report(fmt::format("{}: the service at {} answered without an access_token",
                                      context, session.remote()->url()),
                          kExitFailure);
  }
  if (request.json) {
    nlohmann::ordered_json j;
    j["access_token"] = *token;
    j["expires_in"] = answer->value("expires_in", std::int64_t{0});
    session.out() << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    session.out() << token->get_ref<const std::string&>() << '\n';
  }
  return kExitOk;
}

int remote_token_invalidate(Session& session, const Request& request) {
  if (int rc = remote_check_channel(session, request); rc != kExitOk) return rc;
  const std::string context =
      fmt::format("token invalidate {}/{}", request.channel, printable(request.app_key));
  const nlohmann::json body = {{"access_token", request.token}};
  auto reply =
      session.remote()->post(token_path(request, "invalidate"),
                             body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (!reply) return session.fail(context, reply.error());
  if (reply->status != 200) return remote_failure(session, context, *reply);
  auto answer = answer_json(session, context, *reply);
  if (!answer) return kExitFailure;
  if (!answer->is_object() || !answer->value("invalidated", false)) {
    session.err() << "not current\n";
    return kExitNotFound;
  }
  session.out() << "invalidated\n";
  return kExitOk;
}

int run_remote(Session& session, const Request& request) {
  switch (request.command) {
    case Command::kGet:
      return remote_get(session, request);
    case Command::kSet:
      return remote_set(session, request);
    case Command::kDel:
      return remote_del(session, request);
    case Command::kTtl:
      return remote_ttl(session, request);
    case Command::kStats:
      return remote_stats(session, request);
    case Command::kToken:
      return remote_token(session, request);
    case Command::kTokenInvalidate:
      return remote_token_invalidate(session, request);
    case Command::kServe:
      break;
  }
  return session.usage("serve does not take --server");
}

// Each connection holds a descriptor, and the default soft limit (often
// 1024) would stop accepting before max_connections is reached. Raise it
// towards the hard limit, as far as needed (connections plus the store's
// pool, token clients and files), and say so when even that is short.
void raise_descriptor_limit(std::size_t max_connections) {
  const rlim_t wanted = static_cast<rlim_t>(max_connections) + 256;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= wanted) return;
  const rlim_t raised = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
  if (raised > limit.rlim_cur) {
    limit.rlim_cur = raised;
    (void)setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (raised < wanted) {
    log_message(LogLevel::kWarning,
                fmt::format("open-file limit {} is below AICACHE_MAX_CONNECTIONS {} + 256: "
                            "connections beyond it wait in the listen queue",
                            raised, max_connections));
  }
}

int run_serve(Session& session, const Request& request) {
  // Every setting was checked and bounded when the configuration was loaded.
  const Config& config = session.config();
  ServerOptions options;
  if (request.has_listen) {
    options.listen = request.listen;
  } else if (config.listen) {
    options.listen = *config.listen;
  }
  if (config.api_token) options.api_token = *config.api_token;
  if (config.access_log) options.access_log = *config.access_log;
  if (request.no_access_log) options.access_log = false;
  if (config.max_body_bytes) options.max_body_bytes = *config.max_body_bytes;
  if (config.max_connections) options.max_connections = *config.max_connections;
  if (config.request_timeout) options.request_timeout = *config.request_timeout;
  options.allowed_hosts = config.allowed_hosts;
  raise_descriptor_limit(options.max_connections);

  // SIGTERM and SIGINT are taken by sigwait() below; they are blocked before
  // any thread starts, so every thread inherits the mask and none dies of them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  if (int rc = session.open(/*errors_as_misses=*/true); rc != kExitOk) return rc;
  if (int rc = session.open_tokens(); rc != kExitOk) return rc;
  std::shared_ptr<TokenManager> tokens = session.take_tokens();
  auto server = Server::create(session.shared_cache(), tokens, options);
  if (!server) return session.fail("cannot serve", server.error());
  if (auto started = (*server)->start(); !started) {
    return session.fail("cannot serve", started.error());
  }
  tokens->start_refresher();
  log_message(LogLevel::kInfo,
              fmt::format("store: {}, {} token app(s), API token {}",
                          session.config().redis_url ? "redis" : "memory",
                          session.config().apps.size(),
                          options.api_token.empty() ? "off" : "required"));

  // The server stops on SIGTERM or SIGINT, or on its own when accepting
  // connections cannot go on; then the process exits non-zero so that a
  // supervisor restarts it.
  std::optional<Error> failure;  // written by the watcher, read after joining it
  std::atomic<bool> failed{false};
  std::thread watcher([&] {
    if (Status served = (*server)->wait(); !served) {
      failure = served.error();
      failed.store(true, std::memory_order_release);
      ::kill(::getpid(), SIGTERM);  // wakes the sigwait() below
    }
  });
  int signal = 0;
  sigwait(&stop_signals, &signal);
  if (!failed.load(std::memory_order_acquire)) {
    log_message(LogLevel::kInfo, fmt::format("signal {}: finishing in-flight requests", signal));
  }
  (*server)->stop();
  watcher.join();
  tokens->stop_refresher();
  if (failure) return session.fail("serving stopped", *failure);
  return kExitOk;
}

// Threat model, finding 1: set and del must not write the typed entries (a
// forged token, a lease that stops every refresh), locally or through the
// service. The library and the service refuse too; this message names the
// command or route that owns the key, and no store or service is needed to
// say so. get and ttl still read them.
int refuse_reserved_write(const Session& session, const Request& request) {
  std::string_view owner;
  switch (key_family(request.key)) {
    case KeyFamily::kGeneric: return kExitOk;
    case KeyFamily::kAccessToken:
    case KeyFamily::kTokenState:
      owner = "tokens are managed by 'aicache token CHANNEL APP_KEY' ([--force-refresh], "
              "invalidate) and the service's /v1/tokens/{channel}/{app}";
      break;
    case KeyFamily::kConversation:
      owner = "conversations are written through the service's /v1/conversations/{id}";
      break;
    case KeyFamily::kAiConfig:
      owner = "AI configurations are written through the service's /v1/ai-configs/{user_id}";
      break;
    case KeyFamily::kReserved: owner = "they belong to the library's typed entries"; break;
  }
  return session.usage(fmt::format("{}: keys starting with \"{}\" are reserved and may be read "
                                   "but not written; {}",
                                   request.command == Command::kSet ? "set" : "del",
                                   kReservedKeyPrefix, owner));
}

int run_checked(int argc, char** argv, std::ostream& out, std::ostream& err) {
  auto parsed = parse_command_line(argc, argv, out, err);
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  const Request& request = std::get<Request>(parsed);

  Session session(out, err);
  if (int rc = session.configure(request); rc != kExitOk) return rc;
  switch (request.command) {
    case Command::kServe:
    case Command::kToken:
    case Command::kTokenInvalidate:
      session.log_config_warnings();
      break;
    default:
      break;
  }
  if (request.command == Command::kSet || request.command == Command::kDel) {
    if (int rc = refuse_reserved_write(session, request); rc != kExitOk) return rc;
  }
  if (session.remote()) return run_remote(session, request);
  switch (request.command) {
    case Command::kGet:
      return run_get(session, request);
    case Command::kSet:
      return run_set(session, request);
    case Command::kDel:
      return run_del(session, request);
    case Command::kTtl:
      return run_ttl(session, request);
    case Command::kStats:
      return run_stats(session, request);
    case Command::kToken:
      return run_token(session, request);
    case Command::kTokenInvalidate:
      return run_token_invalidate(session, request);
    case Command::kServe:
      return run_serve(session, request);
  }
  return kExitUsage;
}

}  // namespace

int run(int argc, char** argv, std::ostream& out, std::ostream& err) {
  // Nothing the library or CLI11 throws (allocation failure above all) may
  // end the process with an unhandled exception and a core dump.
  try {
    return run_checked(argc, argv, out, err);
  } catch (const std::exception& e) {
    err << "aicache: internal error: " << e.what() << '\n';
    return kExitFailure;
  }
}

}  // namespace aicache::cli
