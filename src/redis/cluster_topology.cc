#include "redis/cluster_topology.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "aicache/log.h"
#include "core/try.h"
#include "redis/redis_errors.h"

namespace aicache::redis {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::uint16_t kNoNode = 0xffff;

RedisFailure malformed(std::string_view what) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kUnexpected;
  f.text = fmt::format("CLUSTER SLOTS: {}", what);
  return f;
}

// A slot map: which master serves each slot. Immutable once published.
struct SlotMap {
  std::vector<std::shared_ptr<Node>> nodes;          // the masters; never empty
  std::vector<std::string> names;                    // their "host:port", same order
  // The replicas reads go to, per master (same order); empty lists unless
  // read_from_replicas.
  std::vector<std::vector<std::shared_ptr<Node>>> replicas;
  std::array<std::uint16_t, kClusterSlots> owner{};  // index into nodes, or kNoNode

  std::uint16_t index_of(const Node& node) const {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i].get() == &node) return static_cast<std::uint16_t>(i);
    }
    return kNoNode;
  }
  // The master index of a slot; an unassigned slot goes to the first
  // master, which answers with MOVED or CLUSTERDOWN.
  std::uint16_t master_of(std::uint16_t slot) const {
    const std::uint16_t i = owner[slot];
    return i == kNoNode ? 0 : i;
  }
  // The node of a slot.
  const std::shared_ptr<Node>& at(std::uint16_t slot) const { return nodes[master_of(slot)]; }
  // The node to read from for master `i`: its replicas in turn (per thread,
  // so no counter is shared), or the master itself.
  const std::shared_ptr<Node>& reader(std::uint16_t i) const {
    const auto& r = replicas[i];
    if (r.empty()) return nodes[i];
    thread_local std::uint32_t turn = 0;
    return r[turn++ % r.size()];
  }
};

class ClusterTopology final : public Topology {
 public:
  ClusterTopology(NodeFactory factory, ClusterOptions options, std::vector<HostPort> seeds)
      : factory_(std::move(factory)), options_(std::move(options)), seeds_(std::move(seeds)) {}

  ~ClusterTopology() override {
    {
      std::lock_guard lock(refresh_mu_);
      stop_ = true;
    }
    refresh_cv_.notify_all();
    done_cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
  }

  // The first map, read on the caller's thread; then the refresher starts.
  Status start() {
    RedisFailure last = malformed("no seed");
    if (!refresh_once(&last)) {
      return make_error(ErrorCode::kUnavailable,
                        fmt::format("redis cluster: no seed node gave a slot map ({})",
                                    to_error(last, "cluster", "CLUSTER SLOTS").message));
    }
    refresher_ = std::thread([this] { run(); });
    return {};
  }

  std::shared_ptr<Node> node_for(std::string_view key) override {
    std::shared_lock lock(mu_);
    return map_->at(key_slot(key));
  }

  std::vector<KeyGroup> partition(std::span<const std::string_view> keys) override {
    return group_by_master(keys, false);
  }

  std::shared_ptr<Node> reader_for(std::string_view key) override {
    if (!options_.read_from_replicas) return node_for(key);
    std::shared_lock lock(mu_);
    return map_->reader(map_->master_of(key_slot(key)));
  }

  std::vector<KeyGroup> partition_reads(std::span<const std::string_view> keys) override {
    return group_by_master(keys, options_.read_from_replicas);
  }

  std::vector<std::shared_ptr<Node>> primaries() override { return snapshot()->nodes; }

  std::vector<std::shared_ptr<Node>> nodes() override {
    const std::shared_ptr<const SlotMap> map = snapshot();
    std::vector<std::shared_ptr<Node>> out = map->nodes;
    for (const auto& replicas : map->replicas) out.insert(out.end(), replicas.begin(), replicas.end());
    return out;
  }

  void for_each_near(std::string_view key,
                     const std::function<void(NearCache&)>& fn) override {
    const std::shared_ptr<const SlotMap> map = snapshot();
    const std::uint16_t i = map->master_of(key_slot(key));
    if (map->nodes[i]->near) fn(*map->nodes[i]->near);
    for (const auto& replica : map->replicas[i]) {
      if (replica->near) fn(*replica->near);
    }
  }

  // A replica stands in for nothing: a keyless read retried after it
  // failed goes to its master.
  std::shared_ptr<Node> successor(std::shared_ptr<Node> node) override {
    if (std::shared_ptr<Node> master = master_of_replica(*node)) return master;
    return node;
  }

  void describe(std::map<std::string, std::string>& details) const override {
    if (!options_.read_from_replicas) return;
    const std::shared_ptr<const SlotMap> map = snapshot();
    std::string replicas;
    for (const auto& list : map->replicas) {
      for (const auto& replica : list) {
        if (!replicas.empty()) replicas += ',';
        replicas += replica->endpoint;
      }
    }
    details["read_from_replicas"] = "on";
    details["replica_endpoints"] = replicas;
  }

  Reroute after_failure(Node& node, std::string_view key, const RedisFailure& failure) override {
    if (std::optional<Redirect> r = parse_redirect(failure)) return redirect(node, key, *r);
    if (node.pool.options().read_only) return replica_failed(node, key, failure);
    if (breaks_connection(failure)) {
      if (is_timeout(failure)) {
        // A slow node is not a moved one: no waiting on its callers' time.
        request_refresh();
        return {};
      }
      refresh_and_wait(node);
      // Only a command that was never sent may go elsewhere: one whose
      // connection broke may have been applied (RedisStore retries the
      // idempotent ones on node_for(key), the new owner).
      if (failure.kind == RedisFailure::Kind::kConnect && !key.empty()) {
        std::shared_ptr<Node> owner = node_for(key);
        if (owner.get() != &node) {
          return Reroute{.action = Reroute::Action::kRedirect, .node = std::move(owner)};
        }
      }
      return {};
    }
    if (is_cluster_unsettled(failure)) request_refresh();
    return {};
  }

  std::string_view kind() const noexcept override { return "cluster"; }

 private:
  // Keys grouped by the master serving them; each group's node is that
  // master, or with `reads` the node to read from for it.
  std::vector<KeyGroup> group_by_master(std::span<const std::string_view> keys, bool reads) {
    std::vector<KeyGroup> groups;
    if (keys.empty()) return groups;
    const std::shared_ptr<const SlotMap> map = snapshot();
    std::vector<std::size_t> group_of(map->nodes.size(), SIZE_MAX);
    std::vector<std::uint16_t> first_slot;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::uint16_t slot = key_slot(keys[i]);
      const std::uint16_t n = map->master_of(slot);
      std::size_t& g = group_of[n];
      if (g == SIZE_MAX) {
        g = groups.size();
        groups.push_back(KeyGroup{.node = reads ? map->reader(n) : map->nodes[n], .indexes = {}});
        first_slot.push_back(slot);
      }
      groups[g].indexes.push_back(i);
      if (first_slot[g] != slot) groups[g].same_slot = false;
    }
    return groups;
  }

  // The master `node` is a replica of, if that is still a master; null for
  // a master.
  std::shared_ptr<Node> master_of_replica(const Node& node) const {
    // A replica node is made for one master (replica_nodes_ is keyed by
    // both), so the name it keeps is its master's even after a refresh
    // dropped it from the map.
    if (node.replica_of.empty()) return nullptr;
    std::shared_lock lock(mu_);
    auto it = nodes_.find(node.replica_of);
    return it == nodes_.end() ? nullptr : it->second;
  }

  // A read failed on a replica: unreachable, broken, or not serving
  // (LOADING, MASTERDOWN). The read goes to the master at once (no waiting
  // for a refresh: the master is there), and the map is read again, which
  // drops the replica once the cluster marks it failed. A read whose
  // connection broke after it was sent is retried by RedisStore's own rule
  // (on node_for(key): the master).
  Reroute replica_failed(Node& node, std::string_view key, const RedisFailure& failure) {
    if (is_cluster_unsettled(failure)) request_refresh();
    const bool unreachable = breaks_connection(failure);
    if (!unreachable && !is_not_serving(failure)) return {};
    if (unreachable) request_refresh();
    if (unreachable && failure.kind != RedisFailure::Kind::kConnect) return {};
    std::shared_ptr<Node> master = key.empty() ? master_of_replica(node) : node_for(key);
    if (!master) return {};
    return Reroute{.action = Reroute::Action::kRedirect, .node = std::move(master)};
  }

  std::shared_ptr<const SlotMap> snapshot() const {
    std::shared_lock lock(mu_);
    return map_;
  }

  // The endpoint of a node: the configured user, password and db, at
  // host:port.
  RedisEndpoint endpoint_at(const HostPort& where) const {
    RedisEndpoint e = factory_.connection.endpoint;
    e.unix_socket.clear();
    e.host = where.host;
    e.port = where.port;
    return e;
  }

  static std::string_view host_of(const Node& node) { return node.pool.options().endpoint.host; }

  // The registered node at `name`, made if new. Requires mu_ (exclusive).
  std::shared_ptr<Node> node_named_locked(const std::string& name, const HostPort& where) {
    auto it = nodes_.find(name);
    if (it != nodes_.end()) return it->second;
    std::shared_ptr<Node> node = factory_.make(endpoint_at(where));
    nodes_.emplace(name, node);
    return node;
  }

  Reroute redirect(Node& node, std::string_view key, const Redirect& r) {
    HostPort where{r.host.empty() ? std::string(host_of(node)) : r.host, r.port};
    const std::string name = host_port_key(where.host, where.port);
    Reroute out{.action = Reroute::Action::kRedirect,
                .node = nullptr,
                .asking = r.kind == Redirect::Kind::kAsk};
    {
      std::unique_lock lock(mu_);
      out.node = node_named_locked(name, where);
      if (r.kind == Redirect::Kind::kMoved) {
        // The slot lives there now: a copy of the map with that one entry
        // changed, so that the next calls go there directly.
        auto next = std::make_shared<SlotMap>(*map_);
        std::uint16_t i = next->index_of(*out.node);
        if (i == kNoNode) {
          i = static_cast<std::uint16_t>(next->nodes.size());
          next->nodes.push_back(out.node);
          next->names.push_back(name);
          next->replicas.emplace_back();
        }
        next->owner[r.slot] = i;
        map_ = std::move(next);
      }
    }
    if (r.kind == Redirect::Kind::kMoved) request_refresh();
    // A redirect of a command not routed by one key (a group's pipeline):
    // the map is updated, the caller re-runs its keys one by one.
    if (key.empty()) return {};
    return out;
  }

  void request_refresh() {
    {
      std::lock_guard lock(refresh_mu_);
      requested_ = true;
    }
    refresh_cv_.notify_one();
  }

  // Asks for a refresh that starts after this call, and waits (bounded) for
  // it. `failed`: the node that could not be reached, asked last.
  void refresh_and_wait(const Node& failed) {
    const auto wait =
        std::max(factory_.connection.connect_timeout, std::chrono::milliseconds(300)) +
        options_.refresh_interval;
    std::unique_lock lock(refresh_mu_);
    suspect_ = host_port_key(host_of(failed), failed.pool.options().endpoint.port);
    const std::uint64_t target = completed_ + (refreshing_ ? 2 : 1);
    requested_ = true;
    refresh_cv_.notify_one();
    done_cv_.wait_for(lock, wait, [&] { return stop_ || completed_ >= target; });
  }

  // The refresher: one refresh at a time, at most one per interval.
  void run() {
    std::unique_lock lock(refresh_mu_);
    auto backoff = options_.refresh_interval;
    auto next_allowed = SteadyClock::now();
    auto asked = [&] { return stop_ || requested_; };
    while (!stop_) {
      if (options_.periodic_refresh.count() > 0) {
        if (!refresh_cv_.wait_for(lock, options_.periodic_refresh, asked)) requested_ = true;
      } else {
        refresh_cv_.wait(lock, asked);
      }
      if (stop_) break;
      if (refresh_cv_.wait_until(lock, next_allowed, [&] { return stop_; })) break;
      requested_ = false;
      refreshing_ = true;
      lock.unlock();
      const bool ok = refresh_once(nullptr);
      lock.lock();
      refreshing_ = false;
      backoff =
          ok ? options_.refresh_interval : std::min(backoff * 2, options_.refresh_max_backoff);
      next_allowed = SteadyClock::now() + backoff;
      ++completed_;
      done_cv_.notify_all();
    }
  }

  // Where to ask for the map: the known masters (the suspect one last), then
  // the seeds.
  std::vector<HostPort> candidates() {
    std::vector<HostPort> out;
    std::vector<std::string> names;
    std::string suspect;
    {
      std::lock_guard lock(refresh_mu_);
      suspect = suspect_;
    }
    auto add = [&](const HostPort& where) {
      std::string name = host_port_key(where.host, where.port);
      if (std::find(names.begin(), names.end(), name) != names.end()) return;
      names.push_back(std::move(name));
      out.push_back(where);
    };
    std::optional<HostPort> last;
    if (const auto map = snapshot()) {
      for (std::size_t i = 0; i < map->nodes.size(); ++i) {
        const auto& e = map->nodes[i]->pool.options().endpoint;
        if (map->names[i] == suspect) {
          last = HostPort{e.host, e.port};
        } else {
          add(HostPort{e.host, e.port});
        }
      }
    }
    for (const HostPort& seed : seeds_) {
      if (host_port_key(seed.host, seed.port) != suspect) add(seed);
    }
    if (last) add(*last);
    for (const HostPort& seed : seeds_) add(seed);
    return out;
  }

  RedisResult<std::vector<SlotRange>> ask_slots(const HostPort& where) const {
    ConnectionOptions options = factory_.connection;
    options.endpoint = endpoint_at(where);
    AICACHE_ASSIGN_OR_RETURN(std::unique_ptr<RedisConnection> c, RedisConnection::open(options));
    constexpr std::string_view kSlots[] = {"CLUSTER", "SLOTS"};
    AICACHE_ASSIGN_OR_RETURN(const ReplyPtr reply, c->command(kSlots));
    return parse_cluster_slots(*reply, where.host);
  }

  // Reads the map from the first candidate that gives one, and publishes
  // it. False if none did (`last` gets the last failure).
  bool refresh_once(RedisFailure* last) {
    for (const HostPort& where : candidates()) {
      auto ranges = ask_slots(where);
      if (!ranges) {
        if (last != nullptr) *last = ranges.error();
        continue;
      }
      if (ranges->empty()) {
        if (last != nullptr) *last = malformed("no slot is assigned");
        continue;
      }
      install(*ranges);
      return true;
    }
    return false;
  }

  // Publishes the map of `ranges`; nodes no longer masters are dropped (the
  // last holder destroys them, outside the lock here).
  void install(const std::vector<SlotRange>& ranges) {
    auto next = std::make_shared<SlotMap>();
    next->owner.fill(kNoNode);
    std::map<std::string, std::shared_ptr<Node>> dropped;
    std::map<std::string, std::shared_ptr<Node>> replicas_kept;  // by registry name
    std::set<std::string> replicas_seen;                          // by "host:port"
    std::shared_ptr<const SlotMap> old;
    {
      std::unique_lock lock(mu_);
      for (const SlotRange& range : ranges) {
        const std::string name = host_port_key(range.master.host, range.master.port);
        auto at = std::find(next->names.begin(), next->names.end(), name);
        std::uint16_t i = static_cast<std::uint16_t>(at - next->names.begin());
        if (at == next->names.end()) {
          next->nodes.push_back(node_named_locked(name, range.master));
          next->names.push_back(name);
          next->replicas.emplace_back();
          // A master's replicas are the same in each of its ranges: taken
          // from its first.
          if (options_.read_from_replicas) {
            for (const HostPort& where : range.replicas) {
              std::string replica_name = host_port_key(where.host, where.port);
              if (replica_name == name || !replicas_seen.insert(replica_name).second) continue;
              // One node per replica and master: a node knows the master it
              // stands in for, even after a refresh dropped it from the map.
              std::string registered = fmt::format("{} of {}", replica_name, name);
              std::shared_ptr<Node>& node = replica_nodes_[registered];
              if (!node) {
                node = factory_.make(endpoint_at(where), true);
                node->replica_of = name;
              }
              next->replicas.back().push_back(node);
              replicas_kept.emplace(std::move(registered), node);
            }
          }
        }
        std::fill(next->owner.begin() + range.first, next->owner.begin() + range.last + 1, i);
      }
      // Only the masters, and the replicas read from, stay registered.
      for (auto it = nodes_.begin(); it != nodes_.end();) {
        if (std::find(next->names.begin(), next->names.end(), it->first) == next->names.end()) {
          dropped.insert(nodes_.extract(it++));
        } else {
          ++it;
        }
      }
      for (auto it = replica_nodes_.begin(); it != replica_nodes_.end();) {
        if (!replicas_kept.contains(it->first)) {
          dropped.insert(replica_nodes_.extract(it++));
        } else {
          ++it;
        }
      }
      old = std::exchange(map_, std::move(next));
    }
  }

  const NodeFactory factory_;
  const ClusterOptions options_;
  const std::vector<HostPort> seeds_;

  mutable std::shared_mutex mu_;
  // Guarded by mu_:
  std::shared_ptr<const SlotMap> map_;
  std::map<std::string, std::shared_ptr<Node>> nodes_;  // by "host:port"
  // The replicas reads go to (READONLY connections), by "<host:port> of
  // <master's host:port>".
  std::map<std::string, std::shared_ptr<Node>> replica_nodes_;

  std::mutex refresh_mu_;
  std::condition_variable refresh_cv_;  // the refresher waits for requests
  std::condition_variable done_cv_;     // callers wait for a refresh to end
  // Guarded by refresh_mu_:
  bool stop_ = false;
  bool requested_ = false;
  bool refreshing_ = false;
  std::uint64_t completed_ = 0;
  std::string suspect_;  // the node last found unreachable

  std::thread refresher_;
};

bool is_string(const redisReply& r) { return r.type == REDIS_REPLY_STRING; }

// A node of a CLUSTER SLOTS range: [host, port 1..65535, id, ...].
bool is_node(const redisReply* node) {
  return node != nullptr && node->type == REDIS_REPLY_ARRAY && node->elements >= 2 &&
         node->element[0] != nullptr && is_string(*node->element[0]) &&
         node->element[1] != nullptr && node->element[1]->type == REDIS_REPLY_INTEGER &&
         node->element[1]->integer >= 1 && node->element[1]->integer <= 65535;
}

// A node's address as a MOVED would give it: a host name without
// separators or controls, and its port.
std::optional<HostPort> node_address(std::string_view host, long long port) {
  std::optional<HostPort> where = parse_host_port(fmt::format("{}:{}", host, port));
  if (!where || where->host.empty() || where->host.size() > 255) return std::nullopt;
  return where;
}

}  // namespace

RedisResult<std::vector<SlotRange>> parse_cluster_slots(const redisReply& reply,
                                                        std::string_view asked_host) {
  if (reply.type != REDIS_REPLY_ARRAY) return std::unexpected(malformed("not an array"));
  if (reply.elements > kClusterSlots) return std::unexpected(malformed("too many ranges"));
  std::vector<SlotRange> out;
  out.reserve(reply.elements);
  for (std::size_t i = 0; i < reply.elements; ++i) {
    const redisReply* range = reply.element[i];
    if (range == nullptr || range->type != REDIS_REPLY_ARRAY || range->elements < 3) {
      return std::unexpected(malformed("a range is not [first, last, master, ...]"));
    }
    const redisReply* first = range->element[0];
    const redisReply* last = range->element[1];
    const redisReply* master = range->element[2];
    if (first == nullptr || last == nullptr || first->type != REDIS_REPLY_INTEGER ||
        last->type != REDIS_REPLY_INTEGER || first->integer < 0 || last->integer < first->integer ||
        last->integer >= kClusterSlots) {
      return std::unexpected(malformed("a slot range is out of 0..16383"));
    }
    if (!is_node(master)) {
      return std::unexpected(malformed("a master is not [host, port 1..65535, ...]"));
    }
    std::string_view host(master->element[0]->str, master->element[0]->len);
    if (host == "?") continue;  // the node's address is unknown: its slots stay unassigned
    if (host.empty()) host = asked_host;
    auto where = node_address(host, master->element[1]->integer);
    if (!where) return std::unexpected(malformed("a master's address is not a host name"));
    SlotRange slots{.first = static_cast<std::uint16_t>(first->integer),
                    .last = static_cast<std::uint16_t>(last->integer),
                    .master = std::move(*where),
                    .replicas = {}};
    for (std::size_t r = 3; r < range->elements; ++r) {
      // Every replica costs a pool, a tracker and its thread: a few are
      // plenty to spread reads over; the rest are checked for shape, not kept.
      const bool keep = slots.replicas.size() < kMaxReplicasPerRange;
      const redisReply* replica = range->element[r];
      if (!is_node(replica)) {
        return std::unexpected(malformed("a replica is not [host, port 1..65535, ...]"));
      }
      const std::string_view replica_host(replica->element[0]->str, replica->element[0]->len);
      // Beyond the bound, or an unknown address: not a node to read from.
      if (!keep || replica_host.empty() || replica_host == "?") continue;
      auto at = node_address(replica_host, replica->element[1]->integer);
      if (!at) return std::unexpected(malformed("a replica's address is not a host name"));
      slots.replicas.push_back(std::move(*at));
    }
    out.push_back(std::move(slots));
  }
  return out;
}

Result<std::unique_ptr<Topology>> make_cluster_topology(const NodeFactory& factory,
                                                        ClusterOptions options) {
  if (factory.connection.endpoint.db != 0) {
    return make_error(ErrorCode::kConfig,
                      "redis cluster: a Redis Cluster has only database 0; the URL names another");
  }
  std::vector<HostPort> seeds;
  for (const std::string& seed : options.seeds) {
    // The settings' parser (REDIS_CLUSTER_NODES went through it already), so
    // that a seed means the same given here or there; a seed's port is
    // required (0 stands for "left out").
    auto where = parse_redis_host_port(seed, 0);
    if (!where || where->port == 0) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("redis cluster: seed node {} is not host:port ({})",
                                    printable(seed, 100), where ? "no port" : where.error().message));
    }
    seeds.push_back(HostPort{std::move(where->host), where->port});
  }
  if (seeds.empty()) {
    return make_error(ErrorCode::kConfig, "redis cluster: no seed node");
  }
  auto topology = std::make_unique<ClusterTopology>(factory, std::move(options), std::move(seeds));
  AICACHE_TRY(topology->start());
  return std::unique_ptr<Topology>(std::move(topology));
}

}  // namespace aicache::redis
