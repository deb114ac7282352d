// RedisStore: Store over a pool of blocking hiredis connections.
//
// Every operation runs through execute(): take a connection from the pool,
// run the command(s), give the connection back (or discard it if broken).
// Transport failures of idempotent operations are retried once on a fresh
// connection when retry_on_timeout is set; non-idempotent ones (incr,
// remove_if_equals, add) are not, as the first attempt may have been applied.
// Every hiredis or Redis error becomes an aicache Error in to_error().
#include "aicache/redis_store.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/try.h"
#include "redis/redis_connection.h"
#include "redis/redis_errors.h"
#include "redis/redis_pool.h"
#include "redis/redis_script.h"
#include "redis/redis_store_internal.h"
#include "redis/redis_tls.h"
#include "redis/near_cache.h"
#include "redis/tracker.h"

namespace aicache {
namespace {

using redis::Command;
using redis::RedisConnection;
using redis::RedisFailure;
using redis::RedisPool;
using redis::RedisResult;
using redis::RedisScript;
using redis::ReplyPtr;

// Deletes KEYS[1] only if its value is ARGV[1]. Returns 1 if deleted.
constexpr std::string_view kRemoveIfEqualsLua = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua";

// INCRBY KEYS[1] by ARGV[1]; a key it creates gets ARGV[2] ("never", "remove"
// or milliseconds). Returns the new value as a string: Lua numbers are doubles
// and would round integers beyond 2^53. INCRBY itself refuses a non-integer
// value and an overflow, leaving the value unchanged.
constexpr std::string_view kIncrLua = R"lua(
local existed = redis.call('EXISTS', KEYS[1])
redis.call('INCRBY', KEYS[1], ARGV[1])
local value = redis.call('GET', KEYS[1])
if existed == 0 then
  if ARGV[2] == 'remove' then
    redis.call('DEL', KEYS[1])
  elseif ARGV[2] ~= 'never' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
return value
)lua";

RedisFailure unexpected_reply(std::string_view what, const redisReply& r) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kUnexpected;
  f.text = fmt::format("{} answered with reply type {}", what, r.type);
  return f;
}

// Readers of one reply (of a command, a pipeline or an array's element).
RedisResult<std::optional<std::string>> bulk_or_nil(const redisReply& r) {
  if (r.type == REDIS_REPLY_NIL) return std::optional<std::string>();
  if (r.type == REDIS_REPLY_STRING) return std::optional<std::string>(std::string(r.str, r.len));
  return std::unexpected(unexpected_reply("the server", r));
}

RedisResult<long long> integer(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER) return r.integer;
  return std::unexpected(unexpected_reply("the server", r));
}

// What PTTL answered: -2 missing, -1 persistent, else milliseconds left.
KeyTtl key_ttl(long long pttl) {
  KeyTtl out;
  if (pttl == -2) {
    out.state = KeyTtl::State::kMissing;
  } else if (pttl == -1) {
    out.state = KeyTtl::State::kPersistent;
  } else {
    out.state = KeyTtl::State::kExpiring;
    // PTTL says 0 in the last millisecond before expiry; still there.
    out.remaining = std::chrono::milliseconds(pttl > 0 ? pttl : 1);
  }
  return out;
}

// Escapes the glob characters of a SCAN MATCH pattern.
std::string glob_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 1);
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::uint64_t to_u64(std::string_view s) {
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

class RedisStore final : public Store {
 public:
  RedisStore(RedisStoreOptions options, redis::NearTestHooks hooks,
             std::shared_ptr<const redis::TlsContext> tls)
      : options_(std::move(options)),
        hooks_(std::move(hooks)),
        endpoint_(options_.endpoint.redacted_url()),
        pool_(redis::ConnectionOptions{.endpoint = options_.endpoint,
                                       .connect_timeout = options_.connect_timeout,
                                       .socket_timeout = options_.socket_timeout,
                                       .tls = std::move(tls)},
              options_.pool_size, options_.pool_wait_timeout),
        remove_if_equals_(kRemoveIfEqualsLua),
        incr_(kIncrLua) {
    if (options_.near_cache_max_bytes > 0) {
      near_ = std::make_unique<redis::NearCache>(options_.near_cache_max_bytes, options_.clock);
      redis::TrackerOptions tracker_options;
      tracker_options.connection = pool_.options();
      if (hooks_.ping_interval.count() > 0) tracker_options.ping_interval = hooks_.ping_interval;
      tracker_options.after_invalidate = hooks_.after_invalidate;
      tracker_ = std::make_unique<redis::Tracker>(std::move(tracker_options), *near_);
    }
  }

  // Waits (up to the connect timeout) for the near cache's invalidation
  // connection, so that a fresh store serves from it at once.
  void wait_for_tracking() {
    if (tracker_) tracker_->wait_live(std::max(options_.connect_timeout, std::chrono::milliseconds(100)));
  }

  // Opens one connection (endpoint, AUTH, SELECT) and PINGs through it.
  Status check() {
    return execute<void>("connect", true, [](RedisConnection& c) -> RedisResult<void> {
      constexpr std::string_view kPing[] = {"PING"};
      AICACHE_TRY(c.command(kPing));
      return {};
    });
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
    if (near_) {
      if (auto hit = near_->lookup(key)) return std::optional<std::string>(std::move(hit->value));
      const std::string_view keys[] = {key};
      AICACHE_ASSIGN_OR_RETURN(std::vector<std::optional<ValueWithTtl>> read, near_read(keys));
      if (!read[0]) return std::optional<std::string>();
      return std::optional<std::string>(std::move(read[0]->value));
    }
    return execute<std::optional<std::string>>(
        "GET", true, [&](RedisConnection& c) -> RedisResult<std::optional<std::string>> {
          const std::string_view args[] = {"GET", key};
          AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
          return bulk_or_nil(*reply);
        });
  }

  // GET and PTTL pipelined on one connection: one round trip. The server
  // runs them back to back; a key deleted or expired in between (PTTL -2) is
  // a miss.
  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key) override {
    using Found = std::optional<ValueWithTtl>;
    if (near_) {
      if (auto hit = near_->lookup(key)) {
        return Found(ValueWithTtl{std::move(hit->value), hit->ttl});
      }
    }
    const std::string_view keys[] = {key};
    AICACHE_ASSIGN_OR_RETURN(std::vector<Found> read, near_read(keys));
    return std::move(read[0]);
  }

  Status set(std::string_view key, std::string_view value, Ttl ttl) override {
    const DropOnReturn drop(near_.get(), key);
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) {
      AICACHE_TRY(remove(key));
      return {};
    }
    const std::string px = ttl.is_never() ? std::string() : std::to_string(ttl.duration().count());
    return execute<void>("SET", true, [&](RedisConnection& c) -> RedisResult<void> {
      std::vector<std::string_view> args{"SET", key, value};
      if (!ttl.is_never()) {
        args.emplace_back("PX");
        args.emplace_back(px);
      }
      AICACHE_TRY(c.command(args));
      return {};
    });
  }

  Result<bool> add(std::string_view key, std::string_view value, Ttl ttl) override {
    const DropOnReturn drop(near_.get(), key);
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) return false;
    const std::string px = ttl.is_never() ? std::string() : std::to_string(ttl.duration().count());
    // Not retried: if the first attempt stored the value but its reply was
    // lost, a retry would report false for the caller's own entry.
    return execute<bool>("SET NX", false, [&](RedisConnection& c) -> RedisResult<bool> {
      std::vector<std::string_view> args{"SET", key, value, "NX"};
      if (!ttl.is_never()) {
        args.emplace_back("PX");
        args.emplace_back(px);
      }
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      if (reply->type == REDIS_REPLY_NIL) return false;
      if (reply->type == REDIS_REPLY_STATUS) return true;
      return std::unexpected(unexpected_reply("SET NX", *reply));
    });
  }

  Result<bool> remove(std::string_view key) override {
    const DropOnReturn drop(near_.get(), key);
    return execute<bool>("DEL", true, [&](RedisConnection& c) -> RedisResult<bool> {
      const std::string_view args[] = {"DEL", key};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long deleted, integer(*reply));
      return deleted > 0;
    });
  }

  Result<bool> remove_if_equals(std::string_view key, std::string_view expected) override {
    const DropOnReturn drop(near_.get(), key);
    const std::string_view keys[] = {key};
    const std::string_view args[] = {expected};
    // Not retried: a lost reply would turn "deleted" into "not equal".
    return execute<bool>("remove_if_equals", false, [&](RedisConnection& c) -> RedisResult<bool> {
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, eval(c, remove_if_equals_, keys, args));
      AICACHE_ASSIGN_OR_RETURN(const long long deleted, integer(*reply));
      return deleted > 0;
    });
  }

  Result<bool> touch(std::string_view key, Ttl ttl) override {
    const DropOnReturn drop(near_.get(), key);
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) return remove(key);
    if (ttl.is_never()) {
      // PERSIST answers 0 both for a missing key and a persistent one, so
      // EXISTS follows it in the same round trip.
      return execute<bool>("PERSIST", true, [&](RedisConnection& c) -> RedisResult<bool> {
        const Command cmds[] = {{"PERSIST", key}, {"EXISTS", key}};
        AICACHE_ASSIGN_OR_RETURN(const std::vector<ReplyPtr> replies, c.pipeline(cmds));
        AICACHE_ASSIGN_OR_RETURN(const long long exists, integer(*replies[1]));
        return exists > 0;
      });
    }
    const std::string px = std::to_string(ttl.duration().count());
    return execute<bool>("PEXPIRE", true, [&](RedisConnection& c) -> RedisResult<bool> {
      const std::string_view args[] = {"PEXPIRE", key, px};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long set, integer(*reply));
      return set > 0;
    });
  }

  Result<KeyTtl> ttl(std::string_view key) override {
    return execute<KeyTtl>("PTTL", true, [&](RedisConnection& c) -> RedisResult<KeyTtl> {
      const std::string_view args[] = {"PTTL", key};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long pttl, integer(*reply));
      return key_ttl(pttl);
    });
  }

  Result<std::vector<std::optional<std::string>>> get_many(
      std::span<const std::string> keys) override {
    using Values = std::vector<std::optional<std::string>>;
    if (keys.empty()) return Values();
    if (near_) {
      // Near hits first; the rest in one round trip (GET + PTTL each).
      Values values(keys.size());
      std::vector<std::string_view> missing;
      std::vector<std::size_t> where;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (auto hit = near_->lookup(keys[i])) {
          values[i] = std::move(hit->value);
        } else {
          missing.emplace_back(keys[i]);
          where.push_back(i);
        }
      }
      if (missing.empty()) return values;
      AICACHE_ASSIGN_OR_RETURN(std::vector<std::optional<ValueWithTtl>> read, near_read(missing));
      for (std::size_t j = 0; j < where.size(); ++j) {
        if (read[j]) values[where[j]] = std::move(read[j]->value);
      }
      return values;
    }
    return execute<Values>("MGET", true, [&](RedisConnection& c) -> RedisResult<Values> {
      std::vector<std::string_view> args;
      args.reserve(keys.size() + 1);
      args.emplace_back("MGET");
      for (const std::string& k : keys) args.emplace_back(k);
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr r, c.command(args));
      const redisReply& reply = *r;
      if (reply.type != REDIS_REPLY_ARRAY || reply.elements != keys.size()) {
        return std::unexpected(unexpected_reply("MGET", reply));
      }
      Values values;
      values.reserve(keys.size());
      for (std::size_t i = 0; i < reply.elements; ++i) {
        AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> value, bulk_or_nil(*reply.element[i]));
        values.push_back(std::move(value));
      }
      return values;
    });
  }

  Status set_many(std::span<const std::pair<std::string, std::string>> entries, Ttl ttl) override {
    struct DropAll {
      redis::NearCache* near;
      std::span<const std::pair<std::string, std::string>> entries;
      ~DropAll() {
        if (near != nullptr) {
          for (const auto& e : entries) near->drop(e.first);
        }
      }
    } const drop{near_.get(), entries};
    if (entries.empty()) return {};
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) {
      std::vector<std::string> keys;
      keys.reserve(entries.size());
      for (const auto& e : entries) keys.push_back(e.first);
      AICACHE_TRY(remove_many(keys));
      return {};
    }
    const std::string px = ttl.is_never() ? std::string() : std::to_string(ttl.duration().count());
    return execute<void>("SET (pipelined)", true, [&](RedisConnection& c) -> RedisResult<void> {
      std::vector<Command> cmds;
      cmds.reserve(entries.size());
      for (const auto& [k, v] : entries) {
        if (ttl.is_never()) {
          cmds.push_back({"SET", k, v});
        } else {
          cmds.push_back({"SET", k, v, "PX", px});
        }
      }
      AICACHE_TRY(c.pipeline(cmds));
      return {};
    });
  }

  Result<std::uint64_t> remove_many(std::span<const std::string> keys) override {
    struct DropAll {
      redis::NearCache* near;
      std::span<const std::string> keys;
      ~DropAll() {
        if (near != nullptr) {
          for (const auto& k : keys) near->drop(k);
        }
      }
    } const drop{near_.get(), keys};
    if (keys.empty()) return std::uint64_t{0};
    std::vector<std::string_view> args;
    args.reserve(keys.size() + 1);
    args.emplace_back("DEL");
    for (const std::string& k : keys) args.emplace_back(k);
    return del_keys("DEL", args);
  }

  Result<std::int64_t> incr(std::string_view key, std::int64_t delta, Ttl ttl_if_created) override {
    const DropOnReturn drop(near_.get(), key);
    ttl_if_created = ttl_if_created.or_default(options_.default_ttl);
    const std::string delta_text = std::to_string(delta);
    const std::string ttl_text = ttl_if_created.is_never() ? std::string("never")
                                 : ttl_if_created.removes()
                                     ? std::string("remove")
                                     : std::to_string(ttl_if_created.duration().count());
    const std::string_view keys[] = {key};
    const std::string_view args[] = {delta_text, ttl_text};
    // Never retried: the first attempt may have been applied.
    return execute<std::int64_t>(
        "incr", false, [&](RedisConnection& c) -> RedisResult<std::int64_t> {
          AICACHE_ASSIGN_OR_RETURN(const ReplyPtr r, eval(c, incr_, keys, args));
          const redisReply& reply = *r;
          if (reply.type != REDIS_REPLY_STRING)
            return std::unexpected(unexpected_reply("incr", reply));
          std::int64_t value = 0;
          auto [p, ec] = std::from_chars(reply.str, reply.str + reply.len, value);
          if (ec != std::errc() || p != reply.str + reply.len) {
            return std::unexpected(unexpected_reply("incr", reply));
          }
          return value;
        });
  }

  Result<std::uint64_t> clear(std::string_view prefix) override {
    // Every near entry goes, not only the prefix's: clear() is rare, and
    // keys deleted while the scan runs are dropped either way.
    struct DropAll {
      redis::NearCache* near;
      ~DropAll() {
        if (near != nullptr) near->invalidate_all(false);
      }
    } const drop{near_.get()};
    if (prefix.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "clear: an empty prefix would delete every key of the database");
    }
    const std::string pattern = glob_escape(prefix) + "*";
    std::string cursor = "0";
    std::uint64_t deleted = 0;
    do {
      struct Page {
        std::string cursor;
        std::vector<std::string> keys;
      };
      auto scan = [&](RedisConnection& c) -> RedisResult<Page> {
        const std::string_view args[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        AICACHE_ASSIGN_OR_RETURN(const ReplyPtr r, c.command(args));
        const redisReply& reply = *r;
        if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 2 ||
            reply.element[0]->type != REDIS_REPLY_STRING ||
            reply.element[1]->type != REDIS_REPLY_ARRAY) {
          return std::unexpected(unexpected_reply("SCAN", reply));
        }
        Page out;
        out.cursor.assign(reply.element[0]->str, reply.element[0]->len);
        const redisReply& keys = *reply.element[1];
        out.keys.reserve(keys.elements);
        for (std::size_t i = 0; i < keys.elements; ++i) {
          if (keys.element[i]->type != REDIS_REPLY_STRING) {
            return std::unexpected(unexpected_reply("SCAN", *keys.element[i]));
          }
          out.keys.emplace_back(keys.element[i]->str, keys.element[i]->len);
        }
        return out;
      };
      AICACHE_ASSIGN_OR_RETURN(Page page, execute<Page>("SCAN", true, scan));
      cursor = std::move(page.cursor);
      if (!page.keys.empty()) {
        std::vector<std::string_view> args;
        args.reserve(page.keys.size() + 1);
        args.emplace_back("UNLINK");
        for (const std::string& k : page.keys) args.emplace_back(k);
        AICACHE_ASSIGN_OR_RETURN(const std::uint64_t n, del_keys("UNLINK", args));
        deleted += n;
      }
    } while (cursor != "0");
    return deleted;
  }

  Result<StoreStats> stats() override {
    auto fetch = [](RedisConnection& c) -> RedisResult<std::string> {
      constexpr std::string_view kInfo[] = {"INFO"};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(kInfo));
      AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> text, bulk_or_nil(*reply));
      if (!text) return std::unexpected(unexpected_reply("INFO", *reply));
      return std::move(*text);
    };
    AICACHE_ASSIGN_OR_RETURN(const std::string info, execute<std::string>("INFO", true, fetch));

    StoreStats s;
    s.backend = "redis";
    const std::string db_field = fmt::format("db{}", options_.endpoint.db);
    std::string_view rest = info;
    while (!rest.empty()) {
      auto eol = rest.find('\n');
      std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || line.front() == '#') continue;
      auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = line.substr(0, colon);
      std::string_view value = line.substr(colon + 1);
      if (name == "used_memory") {
        s.used_memory_bytes = to_u64(value);
      } else if (name == "used_memory_human") {
        s.used_memory_human = std::string(value);
      } else if (name == "maxmemory") {
        s.max_memory_bytes = to_u64(value);
      } else if (name == "keyspace_hits") {
        s.hits = to_u64(value);
      } else if (name == "keyspace_misses") {
        s.misses = to_u64(value);
      } else if (name == "evicted_keys") {
        s.evictions = to_u64(value);
      } else if (name == "expired_keys") {
        s.expirations = to_u64(value);
      } else if (name == "total_commands_processed") {
        s.commands_processed = to_u64(value);
      } else if (name == db_field) {
        // db0:keys=12,expires=3,avg_ttl=0
        if (value.starts_with("keys=")) {
          s.entries = to_u64(value.substr(5, value.find(',') - 5));
        }
      } else if (name == "connected_clients" || name == "redis_version" ||
                 name == "maxmemory_policy" || name == "uptime_in_seconds" ||
                 name == "used_memory_peak_human") {
        s.details.emplace(std::string(name), std::string(value));
      }
    }
    const redis::PoolCounters pool = pool_.counters();
    s.details["endpoint"] = endpoint_;
    s.details["pool_size"] = std::to_string(pool.size);
    s.details["pool_open"] = std::to_string(pool.open);
    s.details["pool_in_use"] = std::to_string(pool.in_use);
    s.details["pool_waits"] = std::to_string(pool.waits);
    s.details["pool_wait_timeouts"] = std::to_string(pool.timeouts);
    s.details["connects"] = std::to_string(pool.connects);
    s.details["reconnects"] = std::to_string(pool.reconnects);
    s.details["errors"] = std::to_string(errors_.load(std::memory_order_relaxed));
    s.details["retries"] = std::to_string(retries_.load(std::memory_order_relaxed));
    add_near_figures(s.details);
    return s;
  }

 private:
  // Drops `key` from the near cache when the write that declared it returns
  // (after its reply, before the caller sees the result), whatever the
  // outcome: a failed write may still have been applied.
  class DropOnReturn {
   public:
    DropOnReturn(redis::NearCache* near, std::string_view key) : near_(near), key_(key) {}
    ~DropOnReturn() {
      if (near_ != nullptr) near_->drop(key_);
    }
    DropOnReturn(const DropOnReturn&) = delete;
    DropOnReturn& operator=(const DropOnReturn&) = delete;

   private:
    redis::NearCache* near_;
    std::string_view key_;
  };

  // Reads keys from Redis with GET + PTTL each, in one round trip, and caches
  // what it read in the near cache when tracking is live. Before the reads,
  // takes each key's ticket; if the connection's tracking does not point at
  // the current subscriber, CLIENT TRACKING on REDIRECT <id> goes first in
  // the same pipeline. Without a near cache, just the reads.
  Result<std::vector<std::optional<ValueWithTtl>>> near_read(std::span<const std::string_view> keys) {
    using Found = std::optional<ValueWithTtl>;
    return execute<std::vector<Found>>(
        "GET + PTTL", true, [&](RedisConnection& c) -> RedisResult<std::vector<Found>> {
          std::vector<redis::NearCache::Ticket> tickets;
          std::optional<std::int64_t> redirect;
          std::string redirect_text;
          bool cache = false;
          Clock::TimePoint sent{};
          if (near_) {
            tickets.reserve(keys.size());
            for (std::string_view k : keys) tickets.push_back(near_->read_ticket(k));
            const std::uint64_t st = tickets.front().state;
            cache = redis::NearCache::live(st) &&
                    !tracking_unsupported_.load(std::memory_order_relaxed);
            for (const auto& t : tickets) cache = cache && t.state == st;
            if (cache && c.tracking_state != st) {
              redirect = tracker_->client_id_for(st);
              if (redirect) {
                redirect_text = std::to_string(*redirect);
              } else {
                cache = false;
              }
            }
            sent = near_->clock().now();
          }
          std::vector<Command> cmds;
          cmds.reserve(2 * keys.size() + 1);
          if (redirect) cmds.push_back({"CLIENT", "TRACKING", "on", "REDIRECT", redirect_text});
          for (std::string_view k : keys) {
            cmds.push_back({"GET", k});
            cmds.push_back({"PTTL", k});
          }
          AICACHE_ASSIGN_OR_RETURN(std::vector<ReplyPtr> replies, c.pipeline_replies(cmds));
          std::size_t r = 0;
          if (redirect) {
            if (auto refused = redis::reply_failure(*replies[0])) {
              // Tracking refused: the subscriber vanished just now ("...the
              // client ID you want redirect to does not exist"), or for good
              // (Redis < 6 has no CLIENT TRACKING; an ACL may deny CLIENT):
              // the near cache then stays out of the way instead of costing
              // every read a refused command. Either way, nothing read here
              // is cached.
              tracking_errors_.fetch_add(1, std::memory_order_relaxed);
              if (refused->text.find("redirect") == std::string::npos) {
                tracking_unsupported_.store(true, std::memory_order_relaxed);
              }
              cache = false;
            } else {
              c.tracking_state = tickets.front().state;
            }
            ++r;
          }
          // The reads' own error replies (WRONGTYPE) fail the call, as
          // pipeline() would.
          for (std::size_t i = r; i < replies.size(); ++i) {
            if (auto f = redis::reply_failure(*replies[i])) return std::unexpected(std::move(*f));
          }
          std::vector<Found> out;
          out.reserve(keys.size());
          for (std::size_t i = 0; i < keys.size(); ++i, r += 2) {
            AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> value, bulk_or_nil(*replies[r]));
            AICACHE_ASSIGN_OR_RETURN(const long long pttl, integer(*replies[r + 1]));
            if (!value || pttl == -2) {
              out.emplace_back();
              continue;
            }
            const KeyTtl ttl = key_ttl(pttl);
            if (cache) {
              if (hooks_.before_insert) hooks_.before_insert(keys[i]);
              std::optional<Clock::TimePoint> deadline;
              if (ttl.state == KeyTtl::State::kExpiring) deadline = sent + ttl.remaining;
              near_->insert(keys[i], *value, deadline, tickets[i]);
            }
            out.emplace_back(ValueWithTtl{std::move(*value), ttl});
          }
          return out;
        });
  }

  void add_near_figures(std::map<std::string, std::string>& d) const {
    d["near_cache"] = near_ ? "on" : "off";
    if (!near_) return;
    const redis::NearCacheFigures f = near_->figures();
    d["near_max_bytes"] = std::to_string(f.max_bytes);
    d["near_entries"] = std::to_string(f.entries);
    d["near_bytes"] = std::to_string(f.bytes);
    d["near_hits"] = std::to_string(f.hits);
    d["near_misses"] = std::to_string(f.misses);
    d["near_inserts"] = std::to_string(f.inserts);
    d["near_refused_inserts"] = std::to_string(f.refused_inserts);
    d["near_invalidations"] = std::to_string(f.invalidations);
    d["near_local_drops"] = std::to_string(f.local_drops);
    d["near_flushes"] = std::to_string(f.flushes);
    d["near_evictions"] = std::to_string(f.evictions);
    d["near_expirations"] = std::to_string(f.expirations);
    d["near_disconnects"] = std::to_string(f.disconnects);
    const bool live = f.tracking_live && !tracking_unsupported_.load(std::memory_order_relaxed);
    d["near_tracking_live"] = live ? "1" : "0";
    d["near_tracking_errors"] = std::to_string(tracking_errors_.load(std::memory_order_relaxed));
  }

  // Runs `fn` on a pooled connection. A transport failure of an idempotent
  // operation is retried once (on a fresh or other idle connection) when
  // retry_on_timeout is set. Opening a connection is not retried: the server
  // is then unreachable and waiting twice helps no one.
  template <class T, class Fn>
  Result<T> execute(std::string_view what, bool idempotent, Fn&& fn) {
    for (int attempt = 0;; ++attempt) {
      auto lease = pool_.acquire();
      if (!lease) {
        errors_.fetch_add(1, std::memory_order_relaxed);
        if (lease.error().exhausted) {
          return make_error(
              ErrorCode::kResourceExhausted,
              fmt::format("redis {}: {}: all {} connections busy for {} ms", endpoint_, what,
                          options_.pool_size, options_.pool_wait_timeout.count()));
        }
        return std::unexpected(redis::to_error(lease.error().failure, endpoint_, what));
      }
      RedisResult<T> result = fn(**lease);
      if (result) {
        if constexpr (std::is_void_v<T>) {
          return {};
        } else {
          return std::move(*result);
        }
      }
      const RedisFailure& failure = result.error();
      if (redis::is_disconnect(failure)) pool_.drop_idle();
      const bool retry = attempt == 0 && idempotent && options_.retry_on_timeout &&
                         redis::breaks_connection(failure);
      if (retry) {
        retries_.fetch_add(1, std::memory_order_relaxed);
        continue;  // the lease goes back (discarded: broken) before the retry
      }
      errors_.fetch_add(1, std::memory_order_relaxed);
      return std::unexpected(redis::to_error(failure, endpoint_, what));
    }
  }

  // EVALSHA, or EVAL when the server does not know the script (yet).
  static RedisResult<ReplyPtr> eval(RedisConnection& c, const RedisScript& script,
                                    std::span<const std::string_view> keys,
                                    std::span<const std::string_view> args) {
    const std::string numkeys = std::to_string(keys.size());
    std::vector<std::string_view> argv;
    argv.reserve(3 + keys.size() + args.size());
    argv.emplace_back("EVALSHA");
    argv.emplace_back(script.sha);
    argv.emplace_back(numkeys);
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = c.command(argv);
    if (r || !redis::is_noscript(r.error())) return r;
    argv[0] = "EVAL";
    argv[1] = script.source;
    return c.command(argv);
  }

  Result<std::uint64_t> del_keys(std::string_view what, std::span<const std::string_view> args) {
    return execute<std::uint64_t>(what, true,
                                  [&](RedisConnection& c) -> RedisResult<std::uint64_t> {
                                    AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
                                    AICACHE_ASSIGN_OR_RETURN(const long long n, integer(*reply));
                                    return static_cast<std::uint64_t>(n);
                                  });
  }

  const RedisStoreOptions options_;
  const redis::NearTestHooks hooks_;
  const std::string endpoint_;  // redacted URL, for messages
  RedisPool pool_;
  const RedisScript remove_if_equals_;
  const RedisScript incr_;
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> retries_{0};
  std::atomic<std::uint64_t> tracking_errors_{0};
  std::atomic<bool> tracking_unsupported_{false};  // CLIENT TRACKING refused for good
  // Declared last: the tracker (whose thread uses near_) stops first.
  std::unique_ptr<redis::NearCache> near_;
  std::unique_ptr<redis::Tracker> tracker_;
};

}  // namespace

namespace redis {

Result<std::shared_ptr<Store>> make_redis_store_with_hooks(RedisStoreOptions options,
                                                           NearTestHooks hooks) {
  if (options.pool_size == 0) {
    return make_error(ErrorCode::kConfig, "redis store: pool_size must be at least 1");
  }
  // The TLS files are read once, here: a bad one fails the start.
  AICACHE_ASSIGN_OR_RETURN(auto tls, redis::tls_context_for(options.endpoint, options.tls));
  auto store =
      std::make_unique<RedisStore>(std::move(options), std::move(hooks), std::move(tls));
  AICACHE_TRY(store->check());
  store->wait_for_tracking();
  return std::shared_ptr<Store>(std::move(store));
}

}  // namespace redis

Result<std::shared_ptr<Store>> make_redis_store(RedisStoreOptions options) {
  return redis::make_redis_store_with_hooks(std::move(options), {});
}

}  // namespace aicache
