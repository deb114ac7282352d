// The commands, written once against a Backend (backend.h): the local store
// (local_backend.cc) or a running service (remote_backend.cc). What they
// print and their exit codes are here alone; `serve` is in serve.cc.

#include "commands.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "aicache/keys.h"
#include "aicache/log.h"
#include "aicache/token_provider.h"
#include "backend.h"
#include "options.h"
#include "serve.h"
#include "session.h"
#include "server/ttl_signals_json.h"
#include "transfer.h"

namespace aicache::cli {
namespace {

// Text from the command line or a service for a message.
std::string shown(std::string_view text) { return aicache::printable(text, kShownBytes); }

// A key or an app key for a message: whole if it could be valid (no valid
// key is longer than a stored key), through the same filter.
std::string shown_key(std::string_view key) { return aicache::printable(key, kMaxStoredKeyBytes); }

std::string dump(const nlohmann::ordered_json& j) {
  // A value from a server could hold invalid UTF-8; replace, never throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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

// The key rules of the backend (local: prefix, length, characters). Prints
// what went wrong and returns its exit code; kExitOk otherwise.
int check_key(const Session& session, const Request& request) {
  if (auto checked = session.backend().check_key(request.key); !checked) {
    session.fail("invalid key", checked.error());
    return kExitUsage;
  }
  return kExitOk;
}

// The backend opened for a data command, or what went wrong printed.
int open(const Session& session) {
  if (auto opened = session.backend().open(); !opened) return session.fail(opened.error());
  return kExitOk;
}

int not_found(const Session& session, const Request& request) {
  session.err() << "aicache: " << shown_key(request.key) << ": not found\n";
  return kExitNotFound;
}

int run_get(Session& session, const Request& request) {
  if (int rc = check_key(session, request); rc != kExitOk) return rc;
  if (int rc = open(session); rc != kExitOk) return rc;
  Backend& backend = session.backend();
  if (request.raw) {
    auto value = backend.get_raw(request.key);
    if (!value) return session.fail("get", value.error());
    if (!*value) return not_found(session, request);
    session.out() << **value << '\n';
    return kExitOk;
  }
  auto value = backend.get(request.key);
  if (!value) return session.fail("get", value.error());
  if (!*value) return not_found(session, request);
  // A JSON string prints as the string itself, as an operator expects of a
  // token; anything else prints as its JSON text.
  const JsonDocument& doc = **value;
  const nlohmann::json& tree = doc.value();
  if (tree.is_string()) {
    session.out() << tree.get_ref<const std::string&>() << '\n';
  } else {
    session.out() << doc.text() << '\n';
  }
  return kExitOk;
}

int run_set(Session& session, const Request& request) {
  if (int rc = check_key(session, request); rc != kExitOk) return rc;
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
  if (int rc = open(session); rc != kExitOk) return rc;
  if (auto stored = session.backend().set(request.key, document, ttl); !stored) {
    return session.fail("set", stored.error());
  }
  session.out() << "OK\n";
  return kExitOk;
}

int run_del(Session& session, const Request& request) {
  if (int rc = check_key(session, request); rc != kExitOk) return rc;
  if (int rc = open(session); rc != kExitOk) return rc;
  auto removed = session.backend().remove(request.key);
  if (!removed) return session.fail("del", removed.error());
  if (!*removed) return not_found(session, request);
  session.out() << "deleted\n";
  return kExitOk;
}

int run_ttl(Session& session, const Request& request) {
  if (int rc = check_key(session, request); rc != kExitOk) return rc;
  if (int rc = open(session); rc != kExitOk) return rc;
  auto ttl = session.backend().ttl(request.key);
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
  if (int rc = open(session); rc != kExitOk) return rc;
  auto stats = session.backend().stats();
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
    j["families"] = nlohmann::ordered_json::object();
    for (CacheFamily family : kCacheFamilies) {
      const FamilyStats& f = stats->family(family);
      j["families"][std::string(to_string(family))] = {{"hits", f.hits}, {"misses", f.misses}};
    }
    j["ttl_signals"] = server::ttl_signals_json(stats->families);
    j["details"] = nlohmann::ordered_json::object();
    for (const auto& [name, value] : s.details) j["details"][name] = value;
    session.out() << dump(j) << '\n';
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
  // This process's reads by family: through a service, the service's.
  for (CacheFamily family : kCacheFamilies) {
    const FamilyStats& f = stats->family(family);
    out << to_string(family) << "_hits: " << f.hits << '\n'
        << to_string(family) << "_misses: " << f.misses << '\n';
  }
  // The TTL signals (docs/operations.md, "Tuning TTLs"): hits by age, one
  // line a family ("<=1s:0 <=5s:2 ... >7200s:0"), and expired-recently misses.
  for (CacheFamily family : kTtlFamilies) {
    const FamilyStats& f = stats->family(family);
    out << to_string(family) << "_hit_ages:";
    for (std::size_t i = 0; i < f.hit_age_buckets.size(); ++i) {
      if (i < kHitAgeBoundsSeconds.size()) {
        out << " <=" << kHitAgeBoundsSeconds[i] << "s:" << f.hit_age_buckets[i];
      } else {
        out << " >" << kHitAgeBoundsSeconds.back() << "s:" << f.hit_age_buckets[i];
      }
    }
    out << '\n'
        << to_string(family) << "_expired_recently_misses: " << f.expired_recently_misses
        << '\n';
  }
  for (const auto& [name, value] : s.details) out << name << ": " << value << '\n';
  return kExitOk;
}

// The service's hot keys (locally, this one process's: none), hottest first:
// "READS FAMILY ID" lines, like redis-cli --hotkeys.
int run_hotkeys(Session& session, const Request& request) {
  if (int rc = open(session); rc != kExitOk) return rc;
  auto stats = session.backend().stats();
  if (!stats) return session.fail("hotkeys", stats.error());
  if (request.json) {
    nlohmann::ordered_json j = nlohmann::ordered_json::array();
    for (const HotKey& k : stats->hot_keys) {
      j.push_back({{"family", to_string(k.family)}, {"id", k.id}, {"reads", k.reads}});
    }
    session.out() << dump(j) << '\n';
    return kExitOk;
  }
  for (const HotKey& k : stats->hot_keys) {
    session.out() << k.reads << ' ' << to_string(k.family) << ' ' << shown_key(k.id) << '\n';
  }
  return kExitOk;
}

// CHANNEL is checked here; APP_KEY by the backend (locally against the
// configured apps, before anything is opened), then the backend is opened
// for tokens. An unknown channel or app is a usage error (exit 2).
int open_token_app(const Session& session, const Request& request) {
  const auto channel = parse_channel(request.channel);
  if (!channel) {
    return session.usage(fmt::format("token: unknown channel '{}' (wechat, wecom or dingtalk)",
                                     shown(request.channel)));
  }
  Backend& backend = session.backend();
  if (auto known = backend.check_token_app(*channel, request.app_key); !known) {
    return session.fail("token", known.error());
  }
  if (auto opened = backend.open_tokens(); !opened) return session.fail(opened.error());
  return kExitOk;
}

int run_token(Session& session, const Request& request) {
  if (int rc = open_token_app(session, request); rc != kExitOk) return rc;
  auto token = session.backend().token(request.channel, request.app_key, request.force_refresh);
  if (!token) {
    return session.fail(fmt::format("token {}/{}", request.channel, shown_key(request.app_key)),
                        token.error());
  }
  if (request.json) {
    nlohmann::ordered_json j;
    j["access_token"] = token->access_token;
    j["expires_in"] = token->expires_in.count();
    session.out() << dump(j) << '\n';
  } else {
    session.out() << token->access_token << '\n';
  }
  return kExitOk;
}

int run_token_invalidate(Session& session, const Request& request) {
  if (int rc = open_token_app(session, request); rc != kExitOk) return rc;
  auto removed =
      session.backend().invalidate_token(request.channel, request.app_key, request.token);
  if (!removed) {
    return session.fail(
        fmt::format("token invalidate {}/{}", request.channel, shown_key(request.app_key)),
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
    case Command::kWarm:
      return run_warm(session, request);
    case Command::kExport:
      return run_export(session, request);
    case Command::kHotKeys:
      return run_hotkeys(session, request);
    case Command::kServe:
      if (session.remote()) return session.usage("serve does not take --server");
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
