#include "server/data_handlers.h"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "aicache/json.h"
#include "aicache/keys.h"
#include "server/handler_support.h"
#include "server/http_errors.h"

namespace aicache::server {
namespace {

// Nesting accepted in PUT bodies.
constexpr std::size_t kMaxJsonDepth = 128;
// ?ttl= up to 100 years.
constexpr std::int64_t kMaxTtlSeconds = 100LL * 365 * 24 * 3600;

// Threat model, finding 1: /v1/kv must not write the typed entries (a forged
// token, a lease that stops every refresh). The library refuses too
// (keys.h); this answer names the route that owns the key.
std::optional<HttpError> refuse_reserved_write(std::string_view key) {
  std::string_view route;
  switch (key_family(key)) {
    case KeyFamily::kGeneric: return std::nullopt;
    case KeyFamily::kAccessToken:
    case KeyFamily::kTokenState:
      route = "the token routes /v1/tokens/{channel}/{app} (GET, POST .../invalidate, "
              "POST .../refresh)";
      break;
    case KeyFamily::kConversation: route = "/v1/conversations/{id}"; break;
    case KeyFamily::kAiConfig: route = "/v1/ai-configs/{user_id}"; break;
    case KeyFamily::kReserved: route = "the typed routes"; break;
  }
  return http_error(
      400, "reserved_key",
      fmt::format("keys starting with \"{}\" are reserved for typed entries; /v1/kv may read "
                  "them but not write them: use {}",
                  kReservedKeyPrefix, route));
}

// The entry a data route names, read with the typed call of its route.
Lookup<JsonDocument> read_entry(AssistantCache& cache, const RouteMatch& m) {
  switch (m.route) {
    case Route::kConversation: return cache.get_conversation(m.id);
    case Route::kAiConfig: return cache.get_ai_config(m.id);
    default: return cache.get(m.id);
  }
}

// ?ttl=SECONDS, strict: once, digits only, 0 (removes) to 100 years. No
// parameter: the route's default TTL.
Result<Ttl> parse_ttl_query(const HttpRequest& req) {
  const std::size_t count = req.query_count("ttl");
  if (count == 0) return Ttl::use_default();
  if (count != 1) return make_error(ErrorCode::kInvalidArgument, "ttl is given more than once");
  const std::string_view text = *req.query_value("ttl");
  std::int64_t secs = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), secs);
  // from_chars would accept a '-'.
  if (text.empty() || text[0] == '-' || ec != std::errc() || end != text.data() + text.size() ||
      secs < 0 || secs > kMaxTtlSeconds) {
    return make_error(ErrorCode::kInvalidArgument,
                      "ttl must be a whole number of seconds, 0 (removes) or more");
  }
  return Ttl(std::chrono::seconds(secs));
}

}  // namespace

DataHandlers::DataHandlers(std::shared_ptr<AssistantCache> cache, ServiceStats& stats,
                           std::size_t max_body_bytes)
    : cache_(std::move(cache)), stats_(stats), max_body_bytes_(max_body_bytes) {}

HttpResponse DataHandlers::serve(const RouteMatch& m, const HttpRequest& req) const {
  if (m.route == Route::kExport) return export_page(m, req);
  if (req.method == "GET" || req.method == "HEAD") return get(m, req.method == "HEAD");
  // Writes from here on (DELETE, PUT).
  if (m.route == Route::kKv) {
    if (auto refused = refuse_reserved_write(m.id)) return error_response(*refused);
  }
  if (req.method == "DELETE") return remove(m);
  return put(m, req);
}

HttpResponse DataHandlers::export_page(const RouteMatch& m, const HttpRequest& req) const {
  const auto family = parse_cache_family(m.id);
  if (!family || *family == CacheFamily::kToken) {
    return error_response(http_error(
        404, "not_found",
        family ? "tokens are never exported" : "no such family (conversation, ai_config, kv)"));
  }
  std::size_t count = 500;
  if (auto text = req.query_value("count")) {
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), count);
    if (ec != std::errc() || end != text->data() + text->size() || count < 1 || count > 1000) {
      return error_response(http_error(400, "invalid_argument", "count must be 1 to 1000"));
    }
  }
  const std::string_view cursor = req.query_value("cursor").value_or(std::string_view());
  auto page = cache_->export_page(*family, cursor, count);
  if (!page) return fail(page.error());
  // The values are JSON text already: written as they are, not re-serialised.
  std::string body = R"({"entries":[)";
  bool first = true;
  for (const ExportedEntry& e : page->entries) {
    if (!first) body += ',';
    first = false;
    body += R"({"family":")";
    body += to_string(*family);
    body += R"(","id":)";
    body += dump(nlohmann::json(e.id));
    body += R"(,"value":)";
    body += e.value.text();
    if (e.ttl.state == KeyTtl::State::kExpiring) {
      body += fmt::format(R"(,"ttl":{})", (e.ttl.remaining.count() + 999) / 1000);
    }
    body += '}';
  }
  body += R"(],"cursor":)";
  body += page->cursor.empty() ? std::string("null") : dump(nlohmann::json(page->cursor));
  body += fmt::format(R"(,"skipped":{}}})", page->skipped);
  return json_response(200, std::move(body));
}

std::optional<HttpResponse> DataHandlers::serve_if_local(const RouteMatch& m,
                                                         const HttpRequest& req) const {
  // HEAD adds the TTL, which takes a read of its own.
  if (req.method != "GET") return std::nullopt;
  const CacheFamily family = m.route == Route::kConversation ? CacheFamily::kConversation
                             : m.route == Route::kAiConfig   ? CacheFamily::kAiConfig
                                                             : CacheFamily::kKv;
  auto got = cache_->get_if_local(family, m.id);
  if (!got) return std::nullopt;
  return entry_response(std::move(*got));
}

HttpResponse DataHandlers::entry_response(Lookup<JsonDocument> got) const {
  if (got.failed()) return fail(got.error());
  if (!got) return error_response(http_error(404, "not_found", "no entry under this key"));
  return json_response(200, std::string(got->text()));
}

HttpResponse DataHandlers::fail(const Error& error) const {
  stats_.note_error(error);
  return error_response(to_http_error(error, ErrorOrigin::kData));
}

HttpResponse DataHandlers::get(const RouteMatch& m, bool head) const {
  HttpResponse res = entry_response(read_entry(*cache_, m));
  if (head && res.status == 200) add_ttl_header(m, res);
  return res;
}

// X-Aicache-Ttl on a HEAD of a data route (only there: on Redis it costs a
// round trip, which a plain GET should not pay): the remaining whole seconds,
// rounded up (an entry with 200 ms left still exists, so it never reads 0), or
// "never". Left out if the store cannot tell (it failed, or the entry expired
// since it was read): the value is still answered.
void DataHandlers::add_ttl_header(const RouteMatch& m, HttpResponse& res) const {
  const Result<KeyTtl> ttl = m.route == Route::kKv             ? cache_->ttl(m.id)
                             : m.route == Route::kConversation ? cache_->conversation_ttl(m.id)
                                                               : cache_->ai_config_ttl(m.id);
  if (!ttl) return;
  switch (ttl->state) {
    case KeyTtl::State::kMissing:
      return;
    case KeyTtl::State::kPersistent:
      res.headers.emplace_back("X-Aicache-Ttl", "never");
      return;
    case KeyTtl::State::kExpiring:
      res.headers.emplace_back("X-Aicache-Ttl",
                               std::to_string((ttl->remaining.count() + 999) / 1000));
      return;
  }
}

HttpResponse DataHandlers::remove(const RouteMatch& m) const {
  Result<bool> removed = m.route == Route::kKv             ? cache_->remove(m.id)
                         : m.route == Route::kConversation ? cache_->remove_conversation(m.id)
                                                           : cache_->remove_ai_config(m.id);
  if (!removed) return fail(removed.error());
  return json_response(200, *removed ? R"({"deleted":true})" : R"({"deleted":false})");
}

HttpResponse DataHandlers::put(const RouteMatch& m, const HttpRequest& req) const {
  auto ttl = parse_ttl_query(req);
  if (!ttl) return error_response(http_error(400, "invalid_argument", ttl.error().message));
  const bool removes = ttl->removes();
  auto doc = JsonDocument::parse(
      req.body, JsonLimits{.max_depth = kMaxJsonDepth, .max_bytes = max_body_bytes_});
  if (!doc) {
    return error_response(http_error(400, "invalid_json",
                                     fmt::format("the body is not JSON: {}", doc.error().message)));
  }
  Status stored = m.route == Route::kKv             ? cache_->set(m.id, *doc, *ttl)
                  : m.route == Route::kConversation ? cache_->set_conversation(m.id, *doc, *ttl)
                                                    : cache_->set_ai_config(m.id, *doc, *ttl);
  if (!stored) return fail(stored.error());
  if (!removes) stats_.sets.fetch_add(1, std::memory_order_relaxed);
  return json_response(200, removes ? R"({"stored":false})" : R"({"stored":true})");
}

}  // namespace aicache::server
