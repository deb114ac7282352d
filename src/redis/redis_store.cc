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
  explicit RedisStore(RedisStoreOptions options)
      : options_(std::move(options)),
        endpoint_(options_.endpoint.redacted_url()),
        pool_(redis::ConnectionOptions{.endpoint = options_.endpoint,
                                       .connect_timeout = options_.connect_timeout,
                                       .socket_timeout = options_.socket_timeout},
              options_.pool_size, options_.pool_wait_timeout),
        remove_if_equals_(kRemoveIfEqualsLua),
        incr_(kIncrLua) {}

  // Opens one connection (endpoint, AUTH, SELECT) and PINGs through it.
  Status check() {
    return execute<void>("connect", true, [](RedisConnection& c) -> RedisResult<void> {
      constexpr std::string_view kPing[] = {"PING"};
      AICACHE_TRY(c.command(kPing));
      return {};
    });
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
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
    return execute<Found>("GET + PTTL", true, [&](RedisConnection& c) -> RedisResult<Found> {
      const Command cmds[] = {{"GET", key}, {"PTTL", key}};
      AICACHE_ASSIGN_OR_RETURN(const std::vector<ReplyPtr> replies, c.pipeline(cmds));
      AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> value, bulk_or_nil(*replies[0]));
      AICACHE_ASSIGN_OR_RETURN(const long long pttl, integer(*replies[1]));
      if (!value || pttl == -2) return Found();
      return Found(ValueWithTtl{std::move(*value), key_ttl(pttl)});
    });
  }

  Status set(std::string_view key, std::string_view value, Ttl ttl) override {
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
    return execute<bool>("DEL", true, [&](RedisConnection& c) -> RedisResult<bool> {
      const std::string_view args[] = {"DEL", key};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long deleted, integer(*reply));
      return deleted > 0;
    });
  }

  Result<bool> remove_if_equals(std::string_view key, std::string_view expected) override {
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
    if (keys.empty()) return std::uint64_t{0};
    std::vector<std::string_view> args;
    args.reserve(keys.size() + 1);
    args.emplace_back("DEL");
    for (const std::string& k : keys) args.emplace_back(k);
    return del_keys("DEL", args);
  }

  Result<std::int64_t> incr(std::string_view key, std::int64_t delta, Ttl ttl_if_created) override {
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
    return s;
  }

 private:
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
  const std::string endpoint_;  // redacted URL, for messages
  RedisPool pool_;
  const RedisScript remove_if_equals_;
  const RedisScript incr_;
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> retries_{0};
};

}  // namespace

Result<std::shared_ptr<Store>> make_redis_store(RedisStoreOptions options) {
  if (options.pool_size == 0) {
    return make_error(ErrorCode::kConfig, "redis store: pool_size must be at least 1");
  }
  auto store = std::make_unique<RedisStore>(std::move(options));
  AICACHE_TRY(store->check());
  return std::shared_ptr<Store>(std::move(store));
}

}  // namespace aicache
