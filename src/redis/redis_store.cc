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

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "aicache/log.h"
#include "core/try.h"
#include "redis/cluster_slot.h"
#include "redis/cluster_topology.h"
#include "redis/redis_connection.h"
#include "redis/redis_errors.h"
#include "redis/redis_pool.h"
#include "redis/redis_script.h"
#include "redis/redis_store_internal.h"
#include "redis/redis_tls.h"
#include "redis/sentinel_topology.h"
#include "redis/near_cache.h"
#include "redis/topology.h"
#include "redis/tracker.h"

namespace aicache {
namespace {

using redis::Command;
using redis::Node;
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

// A GET's reply and its PTTL's, read together: the value with its TTL, or
// a miss (nil, or the key gone between the two: PTTL -2).
RedisResult<std::optional<ValueWithTtl>> value_with_ttl(const redisReply& get,
                                                        const redisReply& pttl) {
  AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> value, bulk_or_nil(get));
  AICACHE_ASSIGN_OR_RETURN(const long long ms, integer(pttl));
  if (!value || ms == -2) return std::optional<ValueWithTtl>();
  return std::optional<ValueWithTtl>(ValueWithTtl{std::move(*value), key_ttl(ms)});
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

// What every node of a topology is made of.
redis::NodeFactory node_factory(const RedisStoreOptions& options,
                                const redis::NearTestHooks& hooks,
                                std::shared_ptr<const redis::TlsContext> tls) {
  redis::NodeFactory f;
  f.connection = redis::ConnectionOptions{.endpoint = options.endpoint,
                                          .connect_timeout = options.connect_timeout,
                                          .socket_timeout = options.socket_timeout,
                                          .tls = std::move(tls)};
  f.pool_size = options.pool_size;
  f.pool_wait = options.pool_wait_timeout;
  f.near_cache_max_bytes = options.near_cache_max_bytes;
  f.clock = options.clock;
  if (hooks.ping_interval.count() > 0) f.tracker.ping_interval = hooks.ping_interval;
  f.tracker.after_invalidate = hooks.after_invalidate;
  if (hooks.bcast) f.tracker.bcast_prefix = hooks.bcast_prefix;
  return f;
}

// The deployment the options describe: a Sentinel-managed master when
// sentinels are configured, else one server. (Topologies that must find
// their primaries first fail here.)
Result<std::unique_ptr<redis::Topology>> make_topology(
    const RedisStoreOptions& options, const redis::NodeFactory& factory,
    std::shared_ptr<const redis::TlsContext> sentinel_tls) {
  if (!options.sentinel.sentinels.empty() && !options.cluster_nodes.empty()) {
    return make_error(ErrorCode::kConfig,
                      "redis store: sentinels and cluster nodes are both set; a deployment is "
                      "either Sentinel-managed or a Cluster");
  }
  if (options.read_from_replicas && options.cluster_nodes.empty()) {
    return make_error(ErrorCode::kConfig,
                      "redis store: read_from_replicas applies to a Redis Cluster only "
                      "(cluster_nodes is not set)");
  }
  if (!options.sentinel.sentinels.empty()) {
    return redis::make_sentinel_topology(factory, options.sentinel, std::move(sentinel_tls));
  }
  if (!options.cluster_nodes.empty()) {
    // With replica reads, the map is read every 10 s as well: a new replica
    // announces itself through no error.
    return redis::make_cluster_topology(
        factory, {.seeds = options.cluster_nodes,
                  .read_from_replicas = options.read_from_replicas,
                  .periodic_refresh = options.read_from_replicas ? std::chrono::seconds(10)
                                                                 : std::chrono::milliseconds(0)});
  }
  return redis::make_single_topology(factory, options.endpoint);
}

class RedisStore final : public Store {
 public:
  RedisStore(RedisStoreOptions options, redis::NearTestHooks hooks,
             std::unique_ptr<redis::Topology> topology)
      : options_(std::move(options)),
        hooks_(std::move(hooks)),
        remove_if_equals_(kRemoveIfEqualsLua),
        incr_(kIncrLua),
        topology_(std::move(topology)) {}

  // Waits (up to the connect timeout) for the near cache's invalidation
  // connections, so that a fresh store serves from them at once.
  void wait_for_tracking() {
    const auto wait = std::max(options_.connect_timeout, std::chrono::milliseconds(100));
    for (const auto& node : topology_->nodes()) {
      if (node->tracker) node->tracker->wait_live(wait);
    }
  }

  // Opens one connection to every primary (endpoint, AUTH, SELECT) and PINGs
  // through it.
  Status check() {
    auto ping = [](Node&, RedisConnection& c) -> RedisResult<void> {
      constexpr std::string_view kPing[] = {"PING"};
      AICACHE_TRY(c.command(kPing));
      return {};
    };
    for (const auto& node : topology_->primaries()) {
      AICACHE_TRY(run_on<void>("connect", {}, node, true, ping));
    }
    return {};
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
    std::shared_ptr<Node> node = topology_->reader_for(key);
    if (node->near) {
      if (auto hit = node->near->lookup(key)) {
        return std::optional<std::string>(std::move(hit->value));
      }
      const std::string_view keys[] = {key};
      AICACHE_ASSIGN_OR_RETURN(std::vector<std::optional<ValueWithTtl>> read,
                               near_read(std::move(node), keys));
      if (!read[0]) return std::optional<std::string>();
      return std::optional<std::string>(std::move(read[0]->value));
    }
    return run_on<std::optional<std::string>>(
        "GET", key, std::move(node), true,
        [&](Node&, RedisConnection& c) -> RedisResult<std::optional<std::string>> {
          const std::string_view args[] = {"GET", key};
          AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
          return bulk_or_nil(*reply);
        });
  }

  std::optional<ValueWithTtl> peek_local(std::string_view key) override {
    const std::shared_ptr<Node> node = topology_->reader_for(key);
    if (!node->near) return std::nullopt;
    auto hit = node->near->lookup(key);
    if (!hit) return std::nullopt;
    return ValueWithTtl{std::move(hit->value), hit->ttl, hit->vouched};
  }

  // Every near copy of the key may be the one just read (reads rotate over
  // a Cluster's replicas): each is vouched if it holds these bytes.
  void vouch_local(std::string_view key, std::string_view value) override {
    topology_->for_each_near(key, [&](redis::NearCache& near) { near.vouch(key, value); });
  }

  // GET and PTTL pipelined on one connection: one round trip. The server
  // runs them back to back; a key deleted or expired in between (PTTL -2) is
  // a miss.
  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key) override {
    using Found = std::optional<ValueWithTtl>;
    std::shared_ptr<Node> node = topology_->reader_for(key);
    if (node->near) {
      if (auto hit = node->near->lookup(key)) {
        return Found(ValueWithTtl{std::move(hit->value), hit->ttl, hit->vouched});
      }
    }
    const std::string_view keys[] = {key};
    AICACHE_ASSIGN_OR_RETURN(std::vector<Found> read, near_read(std::move(node), keys));
    return std::move(read[0]);
  }

  // GET and PTTL pipelined on the key's primary, past the near cache: the
  // value as of now.
  Result<std::optional<ValueWithTtl>> get_latest(std::string_view key) override {
    using Found = std::optional<ValueWithTtl>;
    return execute<Found>("GET", key, true, [&](Node&, RedisConnection& c) -> RedisResult<Found> {
      const Command cmds[] = {{"GET", key}, {"PTTL", key}};
      AICACHE_ASSIGN_OR_RETURN(const std::vector<ReplyPtr> replies, c.pipeline(cmds));
      return value_with_ttl(*replies[0], *replies[1]);
    });
  }

  Status set(std::string_view key, std::string_view value, Ttl ttl) override {
    const DropOnReturn drop(*topology_, key);
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) {
      AICACHE_TRY(remove(key));
      return {};
    }
    const std::string px = ttl.is_never() ? std::string() : std::to_string(ttl.duration().count());
    return execute<void>("SET", key, true, [&](Node&, RedisConnection& c) -> RedisResult<void> {
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
    const DropOnReturn drop(*topology_, key);
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) return false;
    const std::string px = ttl.is_never() ? std::string() : std::to_string(ttl.duration().count());
    // Not retried: if the first attempt stored the value but its reply was
    // lost, a retry would report false for the caller's own entry.
    return execute<bool>("SET NX", key, false, [&](Node&, RedisConnection& c) -> RedisResult<bool> {
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
    const DropOnReturn drop(*topology_, key);
    return execute<bool>("DEL", key, true, [&](Node&, RedisConnection& c) -> RedisResult<bool> {
      const std::string_view args[] = {"DEL", key};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long deleted, integer(*reply));
      return deleted > 0;
    });
  }

  Result<bool> remove_if_equals(std::string_view key, std::string_view expected) override {
    const DropOnReturn drop(*topology_, key);
    const std::string_view keys[] = {key};
    const std::string_view args[] = {expected};
    // Not retried: a lost reply would turn "deleted" into "not equal".
    return execute<bool>("remove_if_equals", key, false, [&](Node&, RedisConnection& c) -> RedisResult<bool> {
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, eval(c, remove_if_equals_, keys, args));
      AICACHE_ASSIGN_OR_RETURN(const long long deleted, integer(*reply));
      return deleted > 0;
    });
  }

  Result<bool> touch(std::string_view key, Ttl ttl) override {
    const DropOnReturn drop(*topology_, key);
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) return remove(key);
    if (ttl.is_never()) {
      // PERSIST answers 0 both for a missing key and a persistent one, so
      // EXISTS follows it in the same round trip.
      return execute<bool>("PERSIST", key, true, [&](Node&, RedisConnection& c) -> RedisResult<bool> {
        const Command cmds[] = {{"PERSIST", key}, {"EXISTS", key}};
        AICACHE_ASSIGN_OR_RETURN(const std::vector<ReplyPtr> replies, c.pipeline(cmds));
        AICACHE_ASSIGN_OR_RETURN(const long long exists, integer(*replies[1]));
        return exists > 0;
      });
    }
    const std::string px = std::to_string(ttl.duration().count());
    return execute<bool>("PEXPIRE", key, true, [&](Node&, RedisConnection& c) -> RedisResult<bool> {
      const std::string_view args[] = {"PEXPIRE", key, px};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long set, integer(*reply));
      return set > 0;
    });
  }

  Result<KeyTtl> ttl(std::string_view key) override {
    auto pttl = [&](Node&, RedisConnection& c) -> RedisResult<KeyTtl> {
      const std::string_view args[] = {"PTTL", key};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
      AICACHE_ASSIGN_OR_RETURN(const long long ms, integer(*reply));
      return key_ttl(ms);
    };
    return run_on<KeyTtl>("PTTL", key, topology_->reader_for(key), true, pttl);
  }

  Result<std::vector<std::optional<std::string>>> get_many(
      std::span<const std::string> keys) override {
    using Values = std::vector<std::optional<std::string>>;
    Values values(keys.size());
    const std::vector<std::string_view> views(keys.begin(), keys.end());
    const std::vector<redis::KeyGroup> groups = topology_->partition_reads(views);
    if (groups.size() > 1) {
      AICACHE_TRY(get_groups_at_once(groups, views, values));
      return values;
    }
    for (const redis::KeyGroup& group : groups) AICACHE_TRY(get_group(group, views, values));
    return values;
  }

  Status set_many(std::span<const std::pair<std::string, std::string>> entries, Ttl ttl) override {
    std::vector<std::string_view> keys;
    keys.reserve(entries.size());
    for (const auto& e : entries) keys.emplace_back(e.first);
    const DropAllOnReturn drop(*topology_, keys);
    if (entries.empty()) return {};
    ttl = ttl.or_default(options_.default_ttl);
    if (ttl.removes()) {
      AICACHE_TRY(remove_keys(keys));
      return {};
    }
    const std::string px = ttl.is_never() ? std::string() : std::to_string(ttl.duration().count());
    auto set_command = [&](std::size_t i) -> Command {
      const auto& [k, v] = entries[i];
      if (ttl.is_never()) return {"SET", k, v};
      return {"SET", k, v, "PX", px};
    };
    auto ok = [](std::size_t, const redisReply&) -> RedisResult<void> { return {}; };
    for (const redis::KeyGroup& group : topology_->partition(keys)) {
      AICACHE_TRY(per_key_pipeline("SET (pipelined)", group, keys, set_command, ok));
    }
    return {};
  }

  Result<std::uint64_t> remove_many(std::span<const std::string> keys) override {
    const std::vector<std::string_view> views(keys.begin(), keys.end());
    const DropAllOnReturn drop(*topology_, views);
    return remove_keys(views);
  }

  Result<std::int64_t> incr(std::string_view key, std::int64_t delta, Ttl ttl_if_created) override {
    const DropOnReturn drop(*topology_, key);
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
        "incr", key, false, [&](Node&, RedisConnection& c) -> RedisResult<std::int64_t> {
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
      redis::Topology& topology;
      ~DropAll() {
        for (const auto& node : topology.nodes()) {
          if (node->near) node->near->invalidate_all(false);
        }
      }
    } const drop{*topology_};
    if (prefix.empty()) {
      return make_error(ErrorCode::kInvalidArgument,
                        "clear: an empty prefix would delete every key of the database");
    }
    const std::string pattern = glob_escape(prefix) + "*";
    std::uint64_t deleted = 0;
    for (const auto& node : topology_->primaries()) {
      AICACHE_ASSIGN_OR_RETURN(const std::uint64_t n, clear_node(node, pattern));
      deleted += n;
    }
    return deleted;
  }

  // SCANs one primary for `pattern` and UNLINKs what it finds, page by page.
  Result<std::uint64_t> clear_node(const std::shared_ptr<Node>& node, const std::string& pattern) {
    std::string cursor = "0";
    std::uint64_t deleted = 0;
    do {
      AICACHE_ASSIGN_OR_RETURN(ScanReply page, scan_once(node, cursor, pattern, "1000"));
      cursor = std::move(page.cursor);
      if (!page.keys.empty()) {
        const std::vector<std::string_view> keys(page.keys.begin(), page.keys.end());
        AICACHE_ASSIGN_OR_RETURN(const std::uint64_t n, delete_keys("UNLINK", keys));
        deleted += n;
      }
    } while (cursor != "0");
    return deleted;
  }

  // SCAN over every primary in turn. The cursor is "NODE:CURSOR": the
  // primary's index in primaries() and that server's SCAN cursor. A page
  // takes at most kScanCalls round trips, so it may hold fewer than `count`
  // keys (even none) with a cursor to go on.
  Result<ScanPage> scan(std::string_view prefix, std::string_view cursor,
                        std::size_t count) override {
    constexpr int kScanCalls = 16;
    // In a stable order (by address), so that a cursor still names the same
    // node after the topology refreshed its map. (A master that joins or
    // leaves during the scan can still shift the order.)
    std::vector<std::shared_ptr<Node>> primaries = topology_->primaries();
    std::sort(primaries.begin(), primaries.end(),
              [](const auto& a, const auto& b) { return a->endpoint < b->endpoint; });
    std::size_t node = 0;
    std::string server_cursor = "0";
    if (!cursor.empty()) {
      const auto colon = cursor.find(':');
      std::uint64_t redis_cursor = 0;
      bool ok = colon != std::string_view::npos;
      if (ok) {
        const std::string_view index = cursor.substr(0, colon), rest = cursor.substr(colon + 1);
        auto [p1, e1] = std::from_chars(index.data(), index.data() + index.size(), node);
        auto [p2, e2] = std::from_chars(rest.data(), rest.data() + rest.size(), redis_cursor);
        ok = e1 == std::errc() && p1 == index.data() + index.size() && !index.empty() &&
             e2 == std::errc() && p2 == rest.data() + rest.size() && !rest.empty() &&
             node < primaries.size();
      }
      if (!ok) return make_error(ErrorCode::kInvalidArgument, "scan: not a cursor of this store");
      server_cursor = std::to_string(redis_cursor);
    }
    const std::string pattern = glob_escape(prefix) + "*";
    const std::string batch = std::to_string(std::clamp<std::size_t>(count, 1, 10000));
    ScanPage page;
    for (int call = 0; call < kScanCalls && node < primaries.size(); ++call) {
      AICACHE_ASSIGN_OR_RETURN(ScanReply got,
                               scan_once(primaries[node], server_cursor, pattern, batch));
      for (std::string& k : got.keys) page.keys.push_back(std::move(k));
      server_cursor = std::move(got.cursor);
      if (server_cursor == "0") {
        ++node;
        if (node == primaries.size()) return page;  // complete: no cursor
      }
      if (page.keys.size() >= count) break;
    }
    page.cursor = fmt::format("{}:{}", node, server_cursor);
    return page;
  }

  // INFO from every primary, summed; the pools' counters summed too.
  Result<StoreStats> stats() override {
    auto fetch = [](Node&, RedisConnection& c) -> RedisResult<std::string> {
      constexpr std::string_view kInfo[] = {"INFO"};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(kInfo));
      AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> text, bulk_or_nil(*reply));
      if (!text) return std::unexpected(unexpected_reply("INFO", *reply));
      return std::move(*text);
    };
    StoreStats s;
    s.backend = "redis";
    redis::PoolCounters pool;
    redis::NearCacheFigures near;
    near.tracking_live = true;
    std::uint64_t near_messages = 0;  // what the subscribers received
    const std::vector<std::shared_ptr<Node>> primaries = topology_->primaries();
    for (const auto& node : primaries) {
      AICACHE_ASSIGN_OR_RETURN(const std::string info,
                               run_on<std::string>("INFO", {}, node, true, fetch));
      // A Cluster's masters are listed one by one as well.
      std::string node_prefix;
      if (topology_->kind() == "cluster") {
        const RedisEndpoint& e = node->pool.options().endpoint;
        node_prefix = fmt::format("node.{}.", redis::host_port_key(e.host, e.port));
      }
      add_info(info, primaries.size() == 1, node_prefix, s);
    }
    const std::vector<std::shared_ptr<Node>> nodes = topology_->nodes();
    add_replica_reads(nodes, fetch, s);
    // The connections and near caches of every node: replicas read from too.
    for (const auto& node : nodes) {
      const redis::PoolCounters c = node->pool.counters();
      pool.size += c.size;
      pool.open += c.open;
      pool.in_use += c.in_use;
      pool.waits += c.waits;
      pool.timeouts += c.timeouts;
      pool.connects += c.connects;
      pool.reconnects += c.reconnects;
      if (node->near) add_figures(near, node->near->figures());
      if (node->tracker) near_messages += node->tracker->messages();
    }
    if (primaries.size() > 1) s.used_memory_human = format_bytes_human(s.used_memory_bytes);
    std::string endpoints;
    for (const auto& node : primaries) {
      if (!endpoints.empty()) endpoints += ',';
      endpoints += node->endpoint;
    }
    s.details["endpoint"] = endpoints;
    s.details["topology"] = std::string(topology_->kind());
    topology_->describe(s.details);
    s.details["pool_size"] = std::to_string(pool.size);
    s.details["pool_open"] = std::to_string(pool.open);
    s.details["pool_in_use"] = std::to_string(pool.in_use);
    s.details["pool_waits"] = std::to_string(pool.waits);
    s.details["pool_wait_timeouts"] = std::to_string(pool.timeouts);
    s.details["connects"] = std::to_string(pool.connects);
    s.details["reconnects"] = std::to_string(pool.reconnects);
    s.details["errors"] = std::to_string(errors_.load(std::memory_order_relaxed));
    s.details["retries"] = std::to_string(retries_.load(std::memory_order_relaxed));
    add_near_figures(options_.near_cache_max_bytes > 0 ? &near : nullptr, s.details);
    if (options_.near_cache_max_bytes > 0) {
      s.details["near_messages"] = std::to_string(near_messages);
    }
    return s;
  }

 private:
  // The hits and misses of the replicas read from (read_from_replicas):
  // their reads are counted there, not on the masters. The rest of a
  // replica's INFO repeats its master's (keys, memory, expiries) and is
  // left out. A replica's INFO is asked of the replica alone (run_on would
  // send a failed one to its master, whose figures are in already); one
  // that cannot answer adds nothing rather than failing the stats.
  template <class Fetch>
  void add_replica_reads(const std::vector<std::shared_ptr<Node>>& nodes, Fetch& fetch,
                         StoreStats& s) const {
    for (const auto& node : nodes) {
      if (node->replica_of.empty()) continue;  // a primary: counted above
      auto lease = node->pool.acquire();
      if (!lease) continue;
      auto info = fetch(*node, **lease);
      if (!info) continue;
      StoreStats replica;
      add_info(*info, false, {}, replica);
      s.hits += replica.hits;
      s.misses += replica.misses;
    }
  }

  // Drops `key` from every near cache that may hold it.
  static void drop_near(redis::Topology& topology, std::string_view key) {
    topology.for_each_near(key, [key](redis::NearCache& near) { near.drop(key); });
  }

  // Drops `key` from the near cache of the nodes serving it when the write
  // that declared it returns (after its reply, before the caller sees the
  // result), whatever the outcome: a failed write may still have been
  // applied.
  class DropOnReturn {
   public:
    DropOnReturn(redis::Topology& topology, std::string_view key)
        : topology_(topology), key_(key) {}
    ~DropOnReturn() { drop_near(topology_, key_); }
    DropOnReturn(const DropOnReturn&) = delete;
    DropOnReturn& operator=(const DropOnReturn&) = delete;

   private:
    redis::Topology& topology_;
    std::string_view key_;
  };

  // DropOnReturn for many keys.
  class DropAllOnReturn {
   public:
    DropAllOnReturn(redis::Topology& topology, std::span<const std::string_view> keys)
        : topology_(topology), keys_(keys) {}
    ~DropAllOnReturn() {
      for (const std::string_view key : keys_) drop_near(topology_, key);
    }
    DropAllOnReturn(const DropAllOnReturn&) = delete;
    DropAllOnReturn& operator=(const DropAllOnReturn&) = delete;

   private:
    redis::Topology& topology_;
    std::span<const std::string_view> keys_;
  };

  // One group of get_many(): near hits first, the rest in one round trip
  // (GET + PTTL each with a near cache, MGET without).
  Status get_group(const redis::KeyGroup& group, std::span<const std::string_view> keys,
                   std::vector<std::optional<std::string>>& values) {
    std::vector<std::string_view> missing;
    std::vector<std::size_t> where;
    missing.reserve(group.indexes.size());
    where.reserve(group.indexes.size());
    for (const std::size_t i : group.indexes) {
      if (group.node->near) {
        if (auto hit = group.node->near->lookup(keys[i])) {
          values[i] = std::move(hit->value);
          continue;
        }
      }
      missing.push_back(keys[i]);
      where.push_back(i);
    }
    if (missing.empty()) return {};
    if (group.node->near) {
      AICACHE_ASSIGN_OR_RETURN(std::vector<std::optional<ValueWithTtl>> read,
                               near_read(group.node, missing));
      for (std::size_t j = 0; j < where.size(); ++j) {
        if (read[j]) values[where[j]] = std::move(read[j]->value);
      }
      return {};
    }
    if (!group.same_slot) {
      // Keys of several Cluster slots: a GET each, pipelined.
      auto get_command = [&](std::size_t j) -> Command { return {"GET", missing[j]}; };
      auto take = [&](std::size_t j, const redisReply& reply) -> RedisResult<void> {
        AICACHE_ASSIGN_OR_RETURN(values[where[j]], bulk_or_nil(reply));
        return {};
      };
      const redis::KeyGroup all = every_key(group.node, missing.size());
      return per_key_pipeline("GET (pipelined)", all, missing, get_command, take);
    }
    using Values = std::vector<std::optional<std::string>>;
    // One slot (or one server): routed by its first key, so that a Cluster's
    // MOVED or ASK sends the whole MGET after the slot.
    AICACHE_ASSIGN_OR_RETURN(
        Values read,
        run_on<Values>("MGET", missing.front(), group.node, true,
                       [&](Node&, RedisConnection& c) -> RedisResult<Values> {
                         std::vector<std::string_view> args;
                         args.reserve(missing.size() + 1);
                         args.emplace_back("MGET");
                         args.insert(args.end(), missing.begin(), missing.end());
                         AICACHE_ASSIGN_OR_RETURN(const ReplyPtr r, c.command(args));
                         const redisReply& reply = *r;
                         if (reply.type != REDIS_REPLY_ARRAY ||
                             reply.elements != missing.size()) {
                           return std::unexpected(unexpected_reply("MGET", reply));
                         }
                         Values out;
                         out.reserve(missing.size());
                         for (std::size_t i = 0; i < reply.elements; ++i) {
                           AICACHE_ASSIGN_OR_RETURN(std::optional<std::string> value,
                                                    bulk_or_nil(*reply.element[i]));
                           out.push_back(std::move(value));
                         }
                         return out;
                       }));
    for (std::size_t j = 0; j < where.size(); ++j) values[where[j]] = std::move(read[j]);
    return {};
  }

  // A near read in two halves, so that get_many can have several nodes'
  // reads in flight at once: the plan, made before the reads are sent, and
  // what their replies mean.
  struct NearPlan {
    redis::NearCache* near = nullptr;  // null: nothing is cached
    std::vector<redis::NearCache::Ticket> tickets;
    std::optional<std::int64_t> redirect;
    std::string redirect_text;  // the commands refer to it
    bool cache = false;
    Clock::TimePoint sent{};
  };

  // get_many() over several nodes (a Cluster's masters): near hits first,
  // then every group's reads are sent before any reply is read, so that the
  // nodes serve them at the same time rather than one after another. A group
  // whose connection, send or read fails, or whose replies hold an error (a
  // redirect among them), is read again alone by get_group(), with its
  // retries and redirects; GET and PTTL change nothing, so reading twice is
  // harmless.
  Status get_groups_at_once(const std::vector<redis::KeyGroup>& groups,
                            std::span<const std::string_view> keys,
                            std::vector<std::optional<std::string>>& values) {
    struct InFlight {
      const redis::KeyGroup* group = nullptr;
      std::vector<std::string_view> missing;
      std::vector<std::size_t> where;
      std::optional<RedisPool::Lease> lease;
      NearPlan plan;
      std::vector<Command> cmds;
    };
    // Connections are taken in one order (by node) by every caller: two
    // callers never each hold the connection the other waits for.
    std::vector<const redis::KeyGroup*> ordered;
    for (const redis::KeyGroup& group : groups) ordered.push_back(&group);
    std::sort(ordered.begin(), ordered.end(),
              [](const redis::KeyGroup* a, const redis::KeyGroup* b) {
                return a->node.get() < b->node.get();
              });
    // Sized once: the commands refer to their plan.
    std::vector<InFlight> flights(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) flights[g].group = ordered[g];
    std::vector<const redis::KeyGroup*> alone;
    std::optional<Error> exhausted;
    // Nothing returns between a flight's send and its read: a connection
    // given back with replies unread would hand them to its next user.
    for (InFlight& f : flights) {
      Node& node = *f.group->node;
      for (const std::size_t i : f.group->indexes) {
        if (node.near) {
          if (auto hit = node.near->lookup(keys[i])) {
            values[i] = std::move(hit->value);
            continue;
          }
        }
        f.missing.push_back(keys[i]);
        f.where.push_back(i);
      }
      if (f.missing.empty()) continue;
      if (exhausted) continue;
      auto lease = node.pool.acquire();
      if (!lease) {
        // Waited once already: no second wait in get_group(). (Not returned
        // from here: the pipelines sent must be read first.)
        if (lease.error().exhausted) {
          exhausted = pool_exhausted(node, "get_many");
        } else {
          alone.push_back(f.group);
        }
        continue;
      }
      f.lease.emplace(std::move(*lease));
      if (node.near) {
        plan_near_read(node, **f.lease, f.missing, f.plan, f.cmds);
      } else {
        f.cmds.reserve(f.missing.size());
        for (const std::string_view k : f.missing) f.cmds.push_back({"GET", k});
      }
      if (!(*f.lease)->send_pipeline(f.cmds)) {
        f.lease.reset();  // broken: discarded
        alone.push_back(f.group);
      }
    }
    for (InFlight& f : flights) {
      if (!f.lease) continue;
      bool ok = false;
      if (auto replies = (**f.lease).read_pipeline(f.cmds.size())) {
        ok = f.group->node->near
                 ? read_near_flight(f.plan, **f.lease, f.missing, f.where, *replies, values)
                 : read_get_flight(f.where, *replies, values);
      }
      f.lease.reset();
      if (!ok) alone.push_back(f.group);
    }
    if (exhausted) return std::unexpected(std::move(*exhausted));
    for (const redis::KeyGroup* group : alone) AICACHE_TRY(get_group(*group, keys, values));
    return {};
  }

  // The values of one group of get_groups_at_once() with a near cache;
  // false if any reply was an error.
  bool read_near_flight(NearPlan& plan, RedisConnection& c,
                        std::span<const std::string_view> missing,
                        std::span<const std::size_t> where, const std::vector<ReplyPtr>& replies,
                        std::vector<std::optional<std::string>>& values) {
    std::vector<std::size_t> moved;
    auto found = finish_near_read(plan, c, missing, replies, moved);
    if (!found || !moved.empty()) return false;
    for (std::size_t j = 0; j < where.size(); ++j) {
      if ((*found)[j]) values[where[j]] = std::move((*found)[j]->value);
    }
    return true;
  }

  // The same without a near cache: one GET per key.
  static bool read_get_flight(std::span<const std::size_t> where,
                              const std::vector<ReplyPtr>& replies,
                              std::vector<std::optional<std::string>>& values) {
    for (std::size_t j = 0; j < where.size(); ++j) {
      auto value = bulk_or_nil(*replies[j]);
      if (!value) return false;  // an error reply, or not a string
      values[where[j]] = std::move(*value);
    }
    return true;
  }

  // A group of the first `n` keys of a span, all on `node`.
  static redis::KeyGroup every_key(std::shared_ptr<Node> node, std::size_t n) {
    redis::KeyGroup all{.node = std::move(node), .indexes = {}, .same_slot = false};
    all.indexes.reserve(n);
    for (std::size_t i = 0; i < n; ++i) all.indexes.push_back(i);
    return all;
  }

  // One single-key command per key of `group`, pipelined on its node: for
  // keys of several Cluster slots, which no multi-key command may take.
  // `command(i)` is keys[i]'s command and `take(i, reply)` reads its reply.
  // A key answered with MOVED or ASK (its slot moved while the call ran)
  // runs again alone through execute(), which follows the redirect. Every
  // command here is idempotent (GET, SET, DEL, UNLINK).
  template <class MakeCommand, class Take>
  Status per_key_pipeline(std::string_view what, const redis::KeyGroup& group,
                          std::span<const std::string_view> keys, MakeCommand&& command,
                          Take&& take) {
    std::vector<std::size_t> moved;
    auto run = [&](Node&, RedisConnection& c) -> RedisResult<void> {
      moved.clear();
      std::vector<Command> cmds;
      cmds.reserve(group.indexes.size());
      for (const std::size_t i : group.indexes) cmds.push_back(command(i));
      AICACHE_ASSIGN_OR_RETURN(const std::vector<ReplyPtr> replies, c.pipeline_replies(cmds));
      for (std::size_t j = 0; j < replies.size(); ++j) {
        if (auto f = redis::reply_failure(*replies[j])) {
          if (!redis::parse_redirect(*f)) return std::unexpected(std::move(*f));
          moved.push_back(group.indexes[j]);
          continue;
        }
        AICACHE_TRY(take(group.indexes[j], *replies[j]));
      }
      return {};
    };
    AICACHE_TRY(run_on<void>(what, {}, group.node, true, run));
    for (const std::size_t i : moved) {
      AICACHE_TRY(
          execute<void>(what, keys[i], true, [&](Node&, RedisConnection& c) -> RedisResult<void> {
            const Command cmd = command(i);
            AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(cmd));
            return take(i, *reply);
          }));
    }
    return {};
  }

  // DEL of `keys`: one command per node, or per key for keys of several
  // Cluster slots.
  Result<std::uint64_t> remove_keys(std::span<const std::string_view> keys) {
    return delete_keys("DEL", keys);
  }

  // `verb` (DEL or UNLINK) of `keys`; how many existed.
  Result<std::uint64_t> delete_keys(std::string_view verb, std::span<const std::string_view> keys) {
    std::uint64_t removed = 0;
    for (const redis::KeyGroup& group : topology_->partition(keys)) {
      if (!group.same_slot) {
        auto del_command = [&](std::size_t i) -> Command { return {verb, keys[i]}; };
        auto count = [&](std::size_t, const redisReply& reply) -> RedisResult<void> {
          AICACHE_ASSIGN_OR_RETURN(const long long n, integer(reply));
          removed += static_cast<std::uint64_t>(n);
          return {};
        };
        AICACHE_TRY(per_key_pipeline(verb, group, keys, del_command, count));
        continue;
      }
      std::vector<std::string_view> args;
      args.reserve(group.indexes.size() + 1);
      args.emplace_back(verb);
      for (const std::size_t i : group.indexes) args.push_back(keys[i]);
      AICACHE_ASSIGN_OR_RETURN(const std::uint64_t n, del_keys(verb, group.node, args));
      removed += n;
    }
    return removed;
  }

  // Parses INFO's fields into `s`, adding numbers to what is there (one
  // primary's at a time). `single`: the deployment has one primary, whose
  // descriptive fields (version, policy...) are copied too. `node_prefix`
  // ("node.host:port."), when not empty: the primary's own used_memory,
  // keys and role are listed under it in the details.
  void add_info(std::string_view info, bool single, const std::string& node_prefix,
                StoreStats& s) const {
    auto node_detail = [&](std::string_view name, std::string_view value) {
      if (!node_prefix.empty()) s.details[node_prefix + std::string(name)] = printable(value, 64);
    };
    node_detail("keys", "0");  // no db0 line: no key
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
        s.used_memory_bytes += to_u64(value);
        node_detail("used_memory", std::to_string(to_u64(value)));
      } else if (name == "role") {
        node_detail("role", value);
      } else if (name == "used_memory_human") {
        if (single) s.used_memory_human = std::string(value);
      } else if (name == "maxmemory") {
        s.max_memory_bytes += to_u64(value);
      } else if (name == "keyspace_hits") {
        s.hits += to_u64(value);
      } else if (name == "keyspace_misses") {
        s.misses += to_u64(value);
      } else if (name == "evicted_keys") {
        s.evictions += to_u64(value);
      } else if (name == "expired_keys") {
        s.expirations += to_u64(value);
      } else if (name == "total_commands_processed") {
        s.commands_processed += to_u64(value);
      } else if (name == "connected_clients") {
        const std::uint64_t before = s.details.contains("connected_clients")
                                         ? to_u64(s.details["connected_clients"])
                                         : 0;
        s.details["connected_clients"] = std::to_string(before + to_u64(value));
      } else if (name == db_field) {
        // db0:keys=12,expires=3,avg_ttl=0
        if (value.starts_with("keys=")) {
          const std::uint64_t keys = to_u64(value.substr(5, value.find(',') - 5));
          s.entries += keys;
          node_detail("keys", std::to_string(keys));
        }
      } else if (single && (name == "redis_version" || name == "maxmemory_policy" ||
                            name == "uptime_in_seconds" || name == "used_memory_peak_human")) {
        s.details.emplace(std::string(name), std::string(value));
      }
    }
  }

  // Reads keys from Redis with GET + PTTL each, in one round trip, and caches
  // what it read in the near cache when tracking is live. Before the reads,
  // takes each key's ticket; if the connection's tracking does not point at
  // the current subscriber, CLIENT TRACKING on REDIRECT <id> goes first in
  // the same pipeline. Without a near cache, just the reads.
  // `keys` are served by `node` (one key, or a group of partition()).
  Result<std::vector<std::optional<ValueWithTtl>>> near_read(std::shared_ptr<Node> node,
                                                             std::span<const std::string_view> keys) {
    using Found = std::optional<ValueWithTtl>;
    const std::string_view route = keys.size() == 1 ? keys.front() : std::string_view();
    // Keys of a group answered with MOVED or ASK (their slot moved while the
    // call ran): read again one by one below, each following its redirect.
    std::vector<std::size_t> moved;
    AICACHE_ASSIGN_OR_RETURN(
        std::vector<Found> found,
        run_on<std::vector<Found>>(
            "GET + PTTL", route, std::move(node), true,
            [&](Node& n, RedisConnection& c) -> RedisResult<std::vector<Found>> {
              NearPlan plan;
              std::vector<Command> cmds;
              plan_near_read(n, c, keys, plan, cmds);
              AICACHE_ASSIGN_OR_RETURN(std::vector<ReplyPtr> replies, c.pipeline_replies(cmds));
              return finish_near_read(plan, c, keys, replies, moved);
            }));
    for (const std::size_t i : moved) {
      const std::string_view one[] = {keys[i]};
      AICACHE_ASSIGN_OR_RETURN(std::vector<Found> again,
                               near_read(topology_->node_for(keys[i]), one));
      found[i] = std::move(again[0]);
    }
    return found;
  }

  // Takes each key's ticket, decides whether what is read may be cached and
  // whether the connection's tracking must first be pointed at the current
  // subscriber, and appends the commands to `cmds`, which refer to `plan`:
  // keep it in place until they are sent.
  void plan_near_read(Node& n, const RedisConnection& c, std::span<const std::string_view> keys,
                      NearPlan& plan, std::vector<Command>& cmds) {
    // A read through ASK (a slot being imported) is not cached: the map
    // still sends the key's reads to the other node's cache.
    plan.near = c.asking ? nullptr : n.near.get();
    if (plan.near != nullptr) {
      plan.tickets.reserve(keys.size());
      for (std::string_view k : keys) plan.tickets.push_back(plan.near->read_ticket(k));
      const std::uint64_t st = plan.tickets.front().state;
      plan.cache =
          redis::NearCache::live(st) && !tracking_unsupported_.load(std::memory_order_relaxed);
      for (const auto& t : plan.tickets) plan.cache = plan.cache && t.state == st;
      if (hooks_.bcast) {
        // The subscriber registered the prefix itself: nothing to point,
        // but a key outside the prefix would never be invalidated.
        for (std::string_view k : keys) {
          plan.cache = plan.cache && k.starts_with(hooks_.bcast_prefix);
        }
      } else if (plan.cache && c.tracking_state != st) {
        plan.redirect = n.tracker->client_id_for(st);
        if (plan.redirect) {
          plan.redirect_text = std::to_string(*plan.redirect);
        } else {
          plan.cache = false;
        }
      }
      plan.sent = plan.near->clock().now();
    }
    cmds.reserve(cmds.size() + 2 * keys.size() + 1);
    if (plan.redirect) {
      cmds.push_back({"CLIENT", "TRACKING", "on", "REDIRECT", plan.redirect_text});
    }
    for (std::string_view k : keys) {
      cmds.push_back({"GET", k});
      cmds.push_back({"PTTL", k});
    }
  }

  // The values of plan_near_read()'s commands' `replies`, cached when the
  // plan allows. In a group (several keys), a key answered MOVED or ASK is
  // a miss here and its index goes to `moved` (cleared first).
  RedisResult<std::vector<std::optional<ValueWithTtl>>> finish_near_read(
      NearPlan& plan, RedisConnection& c, std::span<const std::string_view> keys,
      const std::vector<ReplyPtr>& replies, std::vector<std::size_t>& moved) {
    moved.clear();
    std::size_t r = 0;
    if (plan.redirect) {
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
        plan.cache = false;
      } else {
        c.tracking_state = plan.tickets.front().state;
      }
      ++r;
    }
    // The reads' own error replies (WRONGTYPE) fail the call, as
    // pipeline() would; in a group, a redirected key is read again.
    std::vector<std::optional<ValueWithTtl>> out;
    out.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i, r += 2) {
      auto f = redis::reply_failure(*replies[r]);
      if (!f) f = redis::reply_failure(*replies[r + 1]);
      if (f) {
        if (keys.size() == 1 || !redis::parse_redirect(*f)) return std::unexpected(std::move(*f));
        moved.push_back(i);
        out.emplace_back();
        continue;
      }
      AICACHE_ASSIGN_OR_RETURN(std::optional<ValueWithTtl> found,
                               value_with_ttl(*replies[r], *replies[r + 1]));
      if (found && plan.cache) {
        if (hooks_.before_insert) hooks_.before_insert(keys[i]);
        std::optional<Clock::TimePoint> deadline;
        if (found->ttl.state == KeyTtl::State::kExpiring) deadline = plan.sent + found->ttl.remaining;
        plan.near->insert(keys[i], found->value, deadline, plan.tickets[i]);
      }
      out.push_back(std::move(found));
    }
    return out;
  }

  // One SCAN call on `node`: the next cursor ("0": done) and the keys.
  struct ScanReply {
    std::string cursor;
    std::vector<std::string> keys;
  };
  Result<ScanReply> scan_once(const std::shared_ptr<Node>& node, const std::string& cursor,
                              const std::string& pattern, const std::string& count) {
    auto call = [&](Node&, RedisConnection& c) -> RedisResult<ScanReply> {
      const std::string_view args[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", count};
      AICACHE_ASSIGN_OR_RETURN(const ReplyPtr r, c.command(args));
      const redisReply& reply = *r;
      if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 2 ||
          reply.element[0]->type != REDIS_REPLY_STRING ||
          reply.element[1]->type != REDIS_REPLY_ARRAY) {
        return std::unexpected(unexpected_reply("SCAN", reply));
      }
      ScanReply out;
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
    return run_on<ScanReply>("SCAN", {}, node, true, call);
  }

  // Sums one node's near cache figures into `sum`.
  static void add_figures(redis::NearCacheFigures& sum, const redis::NearCacheFigures& f) {
    sum.hits += f.hits;
    sum.misses += f.misses;
    sum.inserts += f.inserts;
    sum.refused_inserts += f.refused_inserts;
    sum.invalidations += f.invalidations;
    sum.local_drops += f.local_drops;
    sum.flushes += f.flushes;
    sum.evictions += f.evictions;
    sum.expirations += f.expirations;
    sum.disconnects += f.disconnects;
    sum.entries += f.entries;
    sum.bytes += f.bytes;
    sum.max_bytes += f.max_bytes;
    // Live only if every node's tracking is (`sum` starts live): a node
    // whose tracking is down serves nothing from its near cache.
    sum.tracking_live = sum.tracking_live && f.tracking_live;
  }

  // `near`: the nodes' figures summed; null when the near cache is off.
  void add_near_figures(const redis::NearCacheFigures* near,
                        std::map<std::string, std::string>& d) const {
    d["near_cache"] = near != nullptr ? "on" : "off";
    if (near == nullptr) return;
    const redis::NearCacheFigures& f = *near;
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

  // Runs `fn(node, connection)` on a pooled connection of the node serving
  // `key`; see run_on().
  template <class T, class Fn>
  Result<T> execute(std::string_view what, std::string_view key, bool idempotent, Fn&& fn) {
    return run_on<T>(what, key, topology_->node_for(key), idempotent, std::forward<Fn>(fn));
  }

  // Runs `fn(node, connection)` on a pooled connection of `node`, which
  // serves `key` (empty: a command for that node itself, not routed by key).
  //
  // When the topology says the command was not applied there (MOVED, ASK,
  // READONLY), it goes to the node named, at most kMaxRedirects times; fn
  // receives the node it runs on. A transport failure of an idempotent
  // operation is retried once (on a fresh or other idle connection, of the
  // node now serving `key`, or for a keyless command of the topology's
  // successor() of `node`) when retry_on_timeout is set. Opening a
  // connection is not retried: the server is then unreachable and waiting
  // twice helps no one.
  template <class T, class Fn>
  Result<T> run_on(std::string_view what, std::string_view key, std::shared_ptr<Node> node,
                   bool idempotent, Fn&& fn) {
    constexpr int kMaxRedirects = 5;
    int redirects = 0;
    bool retried = false;
    bool asking = false;
    // The node left by the last move, kept alive until the next: a lease
    // returns its connection to its node's pool after `node` moved on, and
    // the topology may have dropped the old node meanwhile (a failover).
    std::shared_ptr<Node> previous;
    auto move_to = [&](std::shared_ptr<Node> next) {
      previous = std::exchange(node, std::move(next));
    };
    for (;;) {
      auto lease = node->pool.acquire();
      if (!lease) {
        if (lease.error().exhausted) return std::unexpected(pool_exhausted(*node, what));
        // Nothing was sent: any command may go to where the topology says
        // the node went (a failover's new master, a Cluster's new owner).
        redis::Reroute reroute = topology_->after_failure(*node, key, lease.error().failure);
        if (reroute.action == redis::Reroute::Action::kRedirect && reroute.node &&
            redirects < kMaxRedirects) {
          ++redirects;
          move_to(std::move(reroute.node));
          asking = reroute.asking;
          continue;
        }
        errors_.fetch_add(1, std::memory_order_relaxed);
        return std::unexpected(redis::to_error(lease.error().failure, node->endpoint, what));
      }
      (*lease)->asking = asking;  // ASKING before each command fn sends
      RedisResult<T> result = fn(*node, **lease);
      (*lease)->asking = false;
      if (result) {
        if constexpr (std::is_void_v<T>) {
          return {};
        } else {
          return std::move(*result);
        }
      }
      const RedisFailure& failure = result.error();
      if (redis::is_disconnect(failure)) node->pool.drop_idle();
      redis::Reroute reroute = topology_->after_failure(*node, key, failure);
      if (reroute.action == redis::Reroute::Action::kRedirect && reroute.node &&
          redirects < kMaxRedirects) {
        ++redirects;
        move_to(std::move(reroute.node));
        asking = reroute.asking;
        continue;  // the lease goes back before the next attempt
      }
      const bool retry = !retried && idempotent && options_.retry_on_timeout &&
                         redis::breaks_connection(failure);
      if (retry) {
        retried = true;
        retries_.fetch_add(1, std::memory_order_relaxed);
        // The node now serving `key`, or for a keyless command the one
        // standing in for this node (a Sentinel's new master: the failure
        // above made the topology rediscover it).
        move_to(key.empty() ? topology_->successor(node) : topology_->node_for(key));
        asking = false;
        continue;  // the lease goes back (discarded: broken) before the retry
      }
      errors_.fetch_add(1, std::memory_order_relaxed);
      return std::unexpected(redis::to_error(failure, node->endpoint, what));
    }
  }

  // The error of a call that waited pool_wait_timeout for a connection.
  Error pool_exhausted(const Node& node, std::string_view what) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return Error{ErrorCode::kResourceExhausted,
                 fmt::format("redis {}: {}: all {} connections busy for {} ms", node.endpoint, what,
                             options_.pool_size, options_.pool_wait_timeout.count())};
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

  // A DEL or UNLINK command (`args`) for keys `node` serves, all of one
  // slot: routed by the first, so that a MOVED or ASK takes it all along.
  Result<std::uint64_t> del_keys(std::string_view what, std::shared_ptr<Node> node,
                                 std::span<const std::string_view> args) {
    return run_on<std::uint64_t>(what, args[1], std::move(node), true,
                                 [&](Node&, RedisConnection& c) -> RedisResult<std::uint64_t> {
                                   AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c.command(args));
                                   AICACHE_ASSIGN_OR_RETURN(const long long n, integer(*reply));
                                   return static_cast<std::uint64_t>(n);
                                 });
  }

  const RedisStoreOptions options_;
  const redis::NearTestHooks hooks_;
  const RedisScript remove_if_equals_;
  const RedisScript incr_;
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> retries_{0};
  std::atomic<std::uint64_t> tracking_errors_{0};
  std::atomic<bool> tracking_unsupported_{false};  // CLIENT TRACKING refused for good
  std::unique_ptr<redis::Topology> topology_;
};

}  // namespace

namespace redis {

Result<std::shared_ptr<Store>> make_redis_store_with_hooks(RedisStoreOptions options,
                                                           NearTestHooks hooks) {
  if (options.pool_size == 0) {
    return make_error(ErrorCode::kConfig, "redis store: pool_size must be at least 1");
  }
  // The TLS files are read once, here: a bad one fails the start.
  AICACHE_ASSIGN_OR_RETURN(redis::StoreTlsContexts tls, redis::tls_contexts_for(options));
  AICACHE_ASSIGN_OR_RETURN(
      std::unique_ptr<Topology> topology,
      make_topology(options, node_factory(options, hooks, std::move(tls.servers)),
                    std::move(tls.sentinels)));
  auto store = std::make_unique<RedisStore>(std::move(options), std::move(hooks),
                                            std::move(topology));
  AICACHE_TRY(store->check());
  store->wait_for_tracking();
  return std::shared_ptr<Store>(std::move(store));
}

}  // namespace redis

Result<std::shared_ptr<Store>> make_redis_store(RedisStoreOptions options) {
  return redis::make_redis_store_with_hooks(std::move(options), {});
}

}  // namespace aicache
