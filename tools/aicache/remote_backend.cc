#include "remote_backend.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "aicache/log.h"
#include "core/text.h"
#include "core/try.h"
#include "server/ttl_signals_json.h"
#include "tokens/http_client.h"

namespace aicache::cli {
namespace {

// Any key is one path segment: slashes, '?', '#', spaces and UTF-8 are
// percent-encoded (the encoding of the token providers' query values).
std::string kv_path(std::string_view key) { return "/v1/kv/" + internal::percent_encode(key); }

// The service's route of a family's entry.
std::string entry_path(CacheFamily family, std::string_view id) {
  switch (family) {
    case CacheFamily::kConversation: return "/v1/conversations/" + internal::percent_encode(id);
    case CacheFamily::kAiConfig: return "/v1/ai-configs/" + internal::percent_encode(id);
    default: return kv_path(id);
  }
}

std::string token_path(std::string_view channel, std::string_view app_key,
                       std::string_view action = {}) {
  std::string path =
      fmt::format("/v1/tokens/{}/{}", internal::percent_encode(channel), internal::percent_encode(app_key));
  if (!action.empty()) path += fmt::format("/{}", action);
  return path;
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
  return aicache::printable(reply.body, kShownBytes);
}

std::string service_code(const HttpReply& reply) {
  const nlohmann::json error = service_error(reply);
  if (error.is_object()) {
    auto code = error.find("code");
    if (code != error.end() && code->is_string()) return code->get<std::string>();
  }
  return {};
}

}  // namespace

RemoteBackend::RemoteBackend(std::unique_ptr<RemoteClient> client, bool api_token_sent)
    : client_(std::move(client)), api_token_sent_(api_token_sent) {}

Error RemoteBackend::failure(const HttpReply& reply) const {
  const std::string& url = client_->url();
  switch (reply.status) {
    case 400:
    case 404:
    case 413:
      return Error{ErrorCode::kInvalidArgument, service_message(reply)};
    case 401:
      return Error{
          ErrorCode::kConfig,
          api_token_sent_
              ? fmt::format("the service at {} refused the API token in AICACHE_API_TOKEN", url)
              : fmt::format("the service at {} needs AICACHE_API_TOKEN", url)};
    case 502:
      // The platform refused the app's setup (bad secret, IP not allowed):
      // a configuration error, exit 2 as on a local store.
      if (service_code(reply) == "upstream_config") {
        return Error{ErrorCode::kConfig, service_message(reply)};
      }
      break;
    default:
      break;
  }
  return Error{ErrorCode::kUnavailable, fmt::format("the service at {} answered HTTP {}: {}", url,
                                                    reply.status, service_message(reply))};
}

namespace {

// A 200 whose body is not JSON: whatever answered is not the service.
Error not_the_service(const RemoteClient& client) {
  return Error{ErrorCode::kUnavailable,
               fmt::format("the service at {} answered with something other than JSON "
                           "(is it 'aicache serve'?)",
                           client.url())};
}

// The JSON of a 200's body.
Result<nlohmann::json> answer_json(const RemoteClient& client, const HttpReply& reply) {
  auto body = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return std::unexpected(not_the_service(client));
  return body;
}

}  // namespace

Status RemoteBackend::check_key(std::string_view) { return {}; }
Status RemoteBackend::check_token_app(Channel, std::string_view) { return {}; }
Status RemoteBackend::open() { return {}; }
Status RemoteBackend::open_tokens() { return {}; }

Result<std::optional<std::string>> RemoteBackend::get_body(std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply, client_->get(kv_path(key)));
  if (reply.status == 404) return std::nullopt;
  if (reply.status != 200) return std::unexpected(failure(reply));
  return std::move(reply.body);
}

Result<std::optional<JsonDocument>> RemoteBackend::get(std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> body, get_body(key));
  if (!body) return std::nullopt;
  // Whatever its size and depth: the service stored and answered it.
  constexpr auto kUnbounded = std::numeric_limits<std::size_t>::max();
  auto document = JsonDocument::parse(*body, {.max_depth = kUnbounded, .max_bytes = kUnbounded});
  if (!document) return std::unexpected(not_the_service(*client_));
  return std::move(*document);
}

Result<std::optional<std::string>> RemoteBackend::get_raw(std::string_view key) {
  return get_body(key);
}

Status RemoteBackend::set(std::string_view key, const JsonDocument& value, Ttl ttl) {
  return put_entry(CacheFamily::kKv, key, value, ttl);
}

Status RemoteBackend::put_entry(CacheFamily family, std::string_view id,
                                const JsonDocument& value, Ttl ttl) {
  if (family == CacheFamily::kToken) {
    return make_error(ErrorCode::kInvalidArgument, "tokens are never imported");
  }
  std::string path = entry_path(family, id);
  if (ttl.is_never()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the service stores every value with a TTL (its default or ?ttl=)");
  }
  if (!ttl.is_default()) {
    path += fmt::format("?ttl={}",
                        std::chrono::duration_cast<std::chrono::seconds>(ttl.duration()).count());
  }
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply, client_->put(path, std::string(value.text())));
  if (reply.status != 200) return std::unexpected(failure(reply));
  return {};
}

Result<ExportPage> RemoteBackend::export_page(CacheFamily family, std::string_view cursor) {
  std::string path = fmt::format("/v1/export/{}", to_string(family));
  if (!cursor.empty()) path += "?cursor=" + internal::percent_encode(cursor);
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply, client_->get(path));
  if (reply.status != 200) return std::unexpected(failure(reply));
  AICACHE_ASSIGN_OR_RETURN(nlohmann::json answer, answer_json(*client_, reply));
  auto entries = answer.is_object() ? answer.find("entries") : answer.end();
  if (!answer.is_object() || entries == answer.end() || !entries->is_array()) {
    return std::unexpected(not_the_service(*client_));
  }
  ExportPage page;
  for (auto& e : *entries) {
    auto id = e.is_object() ? e.find("id") : e.end();
    auto value = e.is_object() ? e.find("value") : e.end();
    if (id == e.end() || !id->is_string() || value == e.end()) {
      return std::unexpected(not_the_service(*client_));
    }
    ExportedEntry entry{id->get<std::string>(), JsonDocument(std::move(*value)), KeyTtl{}};
    entry.ttl.state = KeyTtl::State::kPersistent;
    if (auto ttl = e.find("ttl"); ttl != e.end() && ttl->is_number_unsigned()) {
      entry.ttl = KeyTtl{.state = KeyTtl::State::kExpiring,
                         .remaining = std::chrono::seconds(ttl->get<std::int64_t>())};
    }
    page.entries.push_back(std::move(entry));
  }
  if (auto c = answer.find("cursor"); c != answer.end() && c->is_string()) {
    page.cursor = c->get<std::string>();
  }
  if (auto s = answer.find("skipped"); s != answer.end() && s->is_number_unsigned()) {
    page.skipped = s->get<std::uint64_t>();
  }
  return page;
}

Result<bool> RemoteBackend::remove(std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply, client_->del(kv_path(key)));
  if (reply.status == 404) return false;
  if (reply.status != 200) return std::unexpected(failure(reply));
  AICACHE_ASSIGN_OR_RETURN(nlohmann::json answer, answer_json(*client_, reply));
  return answer.is_object() && answer.value("deleted", false);
}

Result<KeyTtl> RemoteBackend::ttl(std::string_view key) {
  // The service reports the TTL in X-Aicache-Ttl on a HEAD of the key.
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply, client_->head(kv_path(key)));
  if (reply.status == 404) return KeyTtl{.state = KeyTtl::State::kMissing};
  if (reply.status != 200) return std::unexpected(failure(reply));
  const auto header = reply.header("X-Aicache-Ttl");
  if (header == "never") return KeyTtl{.state = KeyTtl::State::kPersistent};
  std::int64_t seconds = 0;
  if (header) {
    auto [end, ec] = std::from_chars(header->data(), header->data() + header->size(), seconds);
    // Positive whole seconds that fit in milliseconds; anything else is not
    // the service's header.
    if (ec != std::errc() || end != header->data() + header->size() || seconds <= 0 ||
        seconds > std::numeric_limits<std::int64_t>::max() / 1000) {
      seconds = 0;
    }
  }
  if (seconds == 0) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("the service at {} does not report TTLs (no valid X-Aicache-Ttl "
                                  "header; is it an older version?)",
                                  client_->url()));
  }
  return KeyTtl{.state = KeyTtl::State::kExpiring, .remaining = std::chrono::seconds(seconds)};
}

Result<CacheStats> RemoteBackend::stats() {
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply, client_->get("/v1/stats"));
  if (reply.status != 200) return std::unexpected(failure(reply));
  AICACHE_ASSIGN_OR_RETURN(nlohmann::json answer, answer_json(*client_, reply));
  const nlohmann::json* store = nullptr;
  if (answer.is_object()) {
    auto it = answer.find("store");
    if (it != answer.end() && it->is_object()) store = &*it;
  }
  if (!store) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("the service at {} cannot reach its store", client_->url()));
  }
  // Missing or mistyped figures read as zero or empty.
  auto number = [](const nlohmann::json& j, const char* name) -> std::uint64_t {
    auto it = j.find(name);
    return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
  };
  auto text = [](const nlohmann::json& j, const char* name) -> std::string {
    auto it = j.find(name);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  CacheStats stats;
  StoreStats& s = stats.store;
  s.backend = text(*store, "backend");
  s.used_memory_bytes = number(*store, "used_memory_bytes");
  s.used_memory_human = text(*store, "used_memory_human");
  s.max_memory_bytes = number(*store, "max_memory_bytes");
  s.entries = number(*store, "entries");
  s.hits = number(*store, "hits");
  s.misses = number(*store, "misses");
  s.evictions = number(*store, "evictions");
  s.expirations = number(*store, "expirations");
  s.commands_processed = number(*store, "commands_processed");
  if (auto it = store->find("details"); it != store->end() && it->is_object()) {
    for (const auto& [name, value] : it->items()) {
      s.details.emplace(name, value.is_string() ? value.get<std::string>() : value.dump());
    }
  }
  if (auto cache = answer.find("cache"); cache != answer.end() && cache->is_object()) {
    stats.store_errors = number(*cache, "store_errors");
    if (auto hot = answer.find("hot_keys"); hot != answer.end() && hot->is_array()) {
      for (const auto& k : *hot) {
        if (!k.is_object()) continue;
        auto family = parse_cache_family(text(k, "family"));
        if (!family) continue;
        stats.hot_keys.push_back(HotKey{*family, text(k, "id"), number(k, "reads")});
      }
    }
    if (auto families = cache->find("families");
        families != cache->end() && families->is_object()) {
      for (CacheFamily family : kCacheFamilies) {
        auto it = families->find(std::string(to_string(family)));
        if (it == families->end() || !it->is_object()) continue;
        FamilyStats& f = stats.families[static_cast<std::size_t>(family)];
        f.hits = number(*it, "hits");
        f.misses = number(*it, "misses");
      }
    }
    if (auto signals = cache->find("ttl_signals"); signals != cache->end()) {
      server::read_ttl_signals_json(*signals, stats.families);
    }
  }
  return stats;
}

Result<Token> RemoteBackend::token(std::string_view channel, std::string_view app_key,
                                   bool force_refresh) {
  // As locally, a forced refresh asks the platform to revoke the current
  // token too.
  AICACHE_ASSIGN_OR_RETURN(
      HttpReply reply,
      force_refresh ? client_->post(token_path(channel, app_key, "refresh?force_refresh=true"), "")
                    : client_->get(token_path(channel, app_key)));
  if (reply.status != 200) return std::unexpected(failure(reply));
  AICACHE_ASSIGN_OR_RETURN(nlohmann::json answer, answer_json(*client_, reply));
  auto token = answer.is_object() ? answer.find("access_token") : answer.end();
  if (!answer.is_object() || token == answer.end() || !token->is_string()) {
    return make_error(
        ErrorCode::kUnavailable,
        fmt::format("the service at {} answered without an access_token", client_->url()));
  }
  return Token{.access_token = token->get<std::string>(),
               .expires_in = std::chrono::seconds(answer.value("expires_in", std::int64_t{0}))};
}

Result<bool> RemoteBackend::invalidate_token(std::string_view channel, std::string_view app_key,
                                             std::string_view access_token) {
  const nlohmann::json body = {{"access_token", access_token}};
  AICACHE_ASSIGN_OR_RETURN(HttpReply reply,
                           client_->post(token_path(channel, app_key, "invalidate"), dump(body)));
  if (reply.status != 200) return std::unexpected(failure(reply));
  AICACHE_ASSIGN_OR_RETURN(nlohmann::json answer, answer_json(*client_, reply));
  return answer.is_object() && answer.value("invalidated", false);
}

}  // namespace aicache::cli
