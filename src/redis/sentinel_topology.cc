#include "redis/sentinel_topology.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "aicache/log.h"
#include "redis/redis_connection.h"
#include "redis/redis_errors.h"
#include "redis/stop_signal.h"

namespace aicache::redis {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Rediscoveries triggered by failures: at most one per interval. A dead
// master fails every call at once; the sentinels need not hear about each.
constexpr auto kMinInterval = 100ms;
// The subscription's PING after this much silence; as long again without an
// answer and the sentinel is presumed gone.
constexpr auto kPingInterval = 1000ms;
constexpr auto kResubscribeMin = 50ms;
constexpr auto kResubscribeMax = 2000ms;
constexpr std::string_view kSwitchChannel = "+switch-master";
// Bounds on what a sentinel may answer: a host name (RFC 1035: 253) or an
// address; a master name as the user configured it.
constexpr std::size_t kMaxHostBytes = 255;
constexpr std::size_t kMaxMasterNameBytes = 256;
constexpr std::size_t kQuoted = 64;

std::string address_text(const RedisHostPort& a) {
  if (a.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", a.host, a.port);
  return fmt::format("{}:{}", a.host, a.port);
}

bool is_text(const redisReply* r) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

std::string_view text(const redisReply& r) { return {r.str, r.len}; }

// A host as a sentinel may name it: no spaces, controls or URL delimiters.
bool plausible_host(std::string_view h) {
  if (h.empty() || h.size() > kMaxHostBytes) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != '/' && c != '@' && c != '?' && c != '#' && c != ',';
  });
}

std::optional<std::uint16_t> port_number(std::string_view s) {
  unsigned value = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

// Why one sentinel did not lead to the master (or an empty string).
struct Attempt {
  std::optional<RedisHostPort> master;
  std::string why;
  bool config = false;    // refused our user, password or its certificate
  bool mismatch = false;  // may_be_protocol_mismatch(): TLS against plain or back
};

class SentinelTopology final : public Topology {
 public:
  SentinelTopology(NodeFactory factory, RedisSentinelOptions options,
                   std::shared_ptr<const TlsContext> tls)
      : factory_(std::move(factory)), options_(std::move(options)), tls_(std::move(tls)) {}

  ~SentinelTopology() override {
    stop_.stop();
    if (watcher_.joinable()) watcher_.join();
  }

  // Finds the master, makes its node, starts the subscription thread.
  Status start() {
    Result<RedisHostPort> found = discover();
    if (!found) return std::unexpected(std::move(found.error()));
    address_ = *found;
    current_ = factory_.make(endpoint_for(*found));
    watcher_ = std::thread([this] { watch(); });
    return {};
  }

  std::shared_ptr<Node> node_for(std::string_view) override {
    std::lock_guard lock(mu_);
    return current_;
  }

  std::vector<std::shared_ptr<Node>> primaries() override { return {node_for({})}; }

  // One primary serves everything: a keyless command's retry goes to
  // whichever master after_failure's rediscovery found.
  std::shared_ptr<Node> successor(std::shared_ptr<Node>) override { return node_for({}); }

  Reroute after_failure(Node& node, std::string_view, const RedisFailure& failure) override {
    const bool readonly = is_readonly(failure);
    if (!readonly && !breaks_connection(failure)) return {};
    std::shared_ptr<Node> now = follow(&node, false);
    if (now.get() == &node) return {};
    // Not applied on the old master (refused, or READONLY): any command may
    // go to the new one. A transport failure mid-command may have been
    // applied: RedisStore's retry rules decide, and node_for() now names the
    // new master.
    if (readonly || failure.kind == RedisFailure::Kind::kConnect) {
      return {.action = Reroute::Action::kRedirect, .node = std::move(now), .asking = false};
    }
    return {};
  }

  std::string_view kind() const noexcept override { return "sentinel"; }

  void describe(std::map<std::string, std::string>& details) const override {
    details["sentinel_master"] = printable(options_.master_name, kQuoted);
    {
      std::lock_guard lock(mu_);
      details["sentinel_master_address"] = printable(address_text(address_), kMaxHostBytes);
      details["sentinel_failovers"] = std::to_string(failovers_);
      details["sentinel_discoveries"] = std::to_string(discoveries_);
    }
    details["sentinel_subscribed"] = std::to_string(subscribed_.load() ? 1 : 0);
  }

 private:
  // The master's endpoint: the configured user, password and db at `a`.
  RedisEndpoint endpoint_for(const RedisHostPort& a) const {
    RedisEndpoint e = factory_.connection.endpoint;
    e.host = a.host;
    e.port = a.port;
    e.unix_socket.clear();
    return e;
  }

  ConnectionOptions sentinel_connection(const RedisHostPort& s) const {
    ConnectionOptions o;
    o.endpoint.host = s.host;
    o.endpoint.port = s.port;
    o.endpoint.user = options_.username;
    o.endpoint.password = options_.password;
    // rediss:// in the messages that name the sentinel; the context makes
    // the connection TLS.
    o.endpoint.tls = tls_ != nullptr;
    o.tls = tls_;
    o.connect_timeout = factory_.connection.connect_timeout;
    o.socket_timeout = factory_.connection.socket_timeout;
    return o;
  }

  // One sentinel: the master it names, checked with ROLE.
  Attempt ask(const RedisHostPort& sentinel) const {
    Attempt out;
    const ConnectionOptions so = sentinel_connection(sentinel);
    auto fail = [&](const RedisFailure& f, std::string_view what) {
      const Error e = to_error(f, so.endpoint.redacted_url(), what);
      out.config = e.code == ErrorCode::kConfig;
      out.mismatch = may_be_protocol_mismatch(f);
      out.why = e.message;
      return out;
    };
    auto conn = RedisConnection::open(so);
    if (!conn) return fail(conn.error(), "connect");
    const std::string_view args[] = {"SENTINEL", "get-master-addr-by-name", options_.master_name};
    auto reply = (*conn)->command(args);
    if (!reply) return fail(reply.error(), "SENTINEL get-master-addr-by-name");
    const redisReply& r = **reply;
    if (r.type == REDIS_REPLY_NIL) {
      out.why = fmt::format("sentinel {} does not know a master named '{}'", address_text(sentinel),
                            printable(options_.master_name, kQuoted));
      return out;
    }
    std::optional<std::uint16_t> port;
    if (r.type == REDIS_REPLY_ARRAY && r.elements == 2 && is_text(r.element[0]) &&
        is_text(r.element[1]) && plausible_host(text(*r.element[0]))) {
      port = port_number(text(*r.element[1]));
    }
    if (!port) {
      out.why = fmt::format(
          "sentinel {} answered get-master-addr-by-name with something other "
          "than a host and a port",
          address_text(sentinel));
      return out;
    }
    const RedisHostPort master{std::string(text(*r.element[0])), *port};
    if (auto role = check_role(master); !role.empty()) {
      out.why = fmt::format("sentinel {} named {}: {}", address_text(sentinel),
                            printable(address_text(master), kMaxHostBytes), role);
      return out;
    }
    out.master = master;
    return out;
  }

  // Empty if `master` says ROLE master; else why not.
  std::string check_role(const RedisHostPort& master) const {
    ConnectionOptions mo = factory_.connection;
    mo.endpoint = endpoint_for(master);
    auto conn = RedisConnection::open(mo);
    if (!conn) return to_error(conn.error(), mo.endpoint.redacted_url(), "connect").message;
    constexpr std::string_view kRole[] = {"ROLE"};
    auto reply = (*conn)->command(kRole);
    if (!reply) return to_error(reply.error(), mo.endpoint.redacted_url(), "ROLE").message;
    const redisReply& r = **reply;
    if (r.type != REDIS_REPLY_ARRAY || r.elements < 1 || !is_text(r.element[0])) {
      return "ROLE answered with something other than a role";
    }
    const std::string_view role = text(*r.element[0]);
    if (role == "master") return {};
    return fmt::format("it is a {}, not a master", printable(role, kQuoted));
  }

  // Asks every sentinel in turn, until one names a master that says so.
  Result<RedisHostPort> discover() const {
    std::string tried;
    bool all_config = true;
    bool any_mismatch = false;
    for (const RedisHostPort& sentinel : options_.sentinels) {
      Attempt a = ask(sentinel);
      if (a.master) return std::move(*a.master);
      all_config = all_config && a.config;
      any_mismatch = any_mismatch || a.mismatch;
      if (!tried.empty()) tried += "; ";
      tried += a.why;
    }
    // A sentinel may speak the other protocol: say which one was used and
    // what chooses it.
    const std::string_view hint =
        !any_mismatch ? ""
        : tls_        ? " (the sentinels were reached over TLS: sentinel_tls = false, "
                        "REDIS_SENTINEL_TLS=0, for plain ones)"
                      : " (the sentinels were reached over plain TCP: sentinel_tls = true, "
                        "REDIS_SENTINEL_TLS=1, for TLS ones)";
    return make_error(all_config ? ErrorCode::kConfig : ErrorCode::kUnavailable,
                      fmt::format("redis sentinel: no sentinel named a reachable master '{}' "
                                  "(tried {}): {}{}",
                                  printable(options_.master_name, kQuoted),
                                  options_.sentinels.size(), tried, hint));
  }

  // Rediscovers the master unless another caller is doing so (then waits for
  // it, within bounds), or `failed` is no longer the current node (someone moved on
  // already), or the last discovery is too recent; `forced` (a sentinel
  // announced a switch) skips the last two checks. Returns the current node.
  std::shared_ptr<Node> follow(const Node* failed, bool forced) {
    std::unique_lock lock(mu_);
    if (!forced && failed != nullptr && current_.get() != failed) return current_;
    if (discovering_) {
      if (!forced) {
        // A caller waits for the discovery in progress, but no longer than
        // one command's timeouts: its call stays bounded even when every
        // sentinel is slow to answer.
        const auto bound = std::max(factory_.connection.connect_timeout, 1ms) +
                           std::max(factory_.connection.socket_timeout, 1ms);
        cv_.wait_for(lock, bound, [this] { return !discovering_; });
        return current_;
      }
      cv_.wait(lock, [this] { return !discovering_; });
    }
    if (!forced && SteadyClock::now() - last_discovery_ < kMinInterval) return current_;
    discovering_ = true;
    const RedisHostPort was = address_;
    lock.unlock();

    // Whatever happens below (an allocation failure included), the next
    // caller must not wait forever.
    struct Done {
      SentinelTopology& self;
      ~Done() {
        {
          std::lock_guard l(self.mu_);
          self.discovering_ = false;
          self.last_discovery_ = SteadyClock::now();
          ++self.discoveries_;
        }
        self.cv_.notify_all();
      }
    };
    std::shared_ptr<Node> old;
    std::shared_ptr<Node> now;
    {
      const Done done{*this};
      Result<RedisHostPort> found = discover();
      std::shared_ptr<Node> fresh;
      if (found && (found->host != was.host || found->port != was.port)) {
        fresh = factory_.make(endpoint_for(*found));
      }
      lock.lock();
      if (fresh) {
        old = std::exchange(current_, fresh);
        address_ = *found;
        ++failovers_;
      }
      now = current_;
      lock.unlock();
      if (fresh) {
        log_message(LogLevel::kWarning,
                    fmt::format("redis sentinel: master '{}' moved from {} to {}",
                                printable(options_.master_name, kQuoted),
                                printable(address_text(was), kMaxHostBytes),
                                printable(address_text(*found), kMaxHostBytes)));
      }
    }
    return now;  // `old` goes (its tracker joined) outside the lock
  }

  // The subscription thread: one sentinel after another.
  void watch() {
    std::chrono::milliseconds delay = kResubscribeMin;
    std::size_t next = 0;
    bool first = true;
    while (!stop_.stopped()) {
      const RedisHostPort& sentinel = options_.sentinels[next++ % options_.sentinels.size()];
      const bool subscribed = session(sentinel, first);
      if (subscribed) first = false;
      if (stop_.stopped()) break;
      delay = subscribed ? kResubscribeMin : std::min(delay * 2, kResubscribeMax);
      if (!stop_.pause(delay)) break;
    }
  }

  // One subscription; true if it got as far as subscribing.
  bool session(const RedisHostPort& sentinel, bool first) {
    auto opened = RedisConnection::open(sentinel_connection(sentinel));
    if (!opened) return false;
    RedisConnection& conn = **opened;
    const std::string_view subscribe[] = {"SUBSCRIBE", kSwitchChannel};
    auto subscribed = conn.command(subscribe);
    if (!subscribed) return false;
    subscribed_.store(true);
    // A switch announced while no subscription was up would be missed.
    if (!first) follow(nullptr, true);
    conn.listen(kPingInterval, stop_.fd(), stop_.flag(), [this](const redisReply& m) {
      if (announces_switch(m)) follow(nullptr, true);
    });
    subscribed_.store(false);
    return true;
  }

  // ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]
  // for our master. (The new address itself is not trusted: discovery asks
  // the sentinels and checks ROLE, as at start.)
  bool announces_switch(const redisReply& m) const {
    if (m.type != REDIS_REPLY_ARRAY || m.elements != 3) return false;
    if (!is_text(m.element[0]) || text(*m.element[0]) != "message") return false;
    if (!is_text(m.element[1]) || text(*m.element[1]) != kSwitchChannel) return false;
    if (!is_text(m.element[2])) return false;
    const std::string_view payload = text(*m.element[2]);
    return payload.size() > options_.master_name.size() &&
           payload.starts_with(options_.master_name) && payload[options_.master_name.size()] == ' ';
  }

  const NodeFactory factory_;
  const RedisSentinelOptions options_;
  const std::shared_ptr<const TlsContext> tls_;  // the sentinels'; null: plain

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  std::shared_ptr<Node> current_;
  RedisHostPort address_;
  bool discovering_ = false;
  SteadyClock::time_point last_discovery_{};
  std::uint64_t failovers_ = 0;
  std::uint64_t discoveries_ = 0;

  StopSignal stop_;  // the destructor stops and wakes the watcher through it
  std::atomic<bool> subscribed_{false};
  std::thread watcher_;
};

// A master name as sentinel.conf and +switch-master messages can hold it.
bool valid_master_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxMasterNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

}  // namespace

Result<std::unique_ptr<Topology>> make_sentinel_topology(
    const NodeFactory& factory, const RedisSentinelOptions& options,
    std::shared_ptr<const TlsContext> sentinel_tls) {
  if (options.sentinels.empty()) {
    return make_error(ErrorCode::kConfig, "redis sentinel: no sentinel addresses");
  }
  if (options.master_name.empty()) {
    return make_error(ErrorCode::kConfig,
                      "redis sentinel: the master's name is required with sentinels "
                      "(REDIS_SENTINEL_MASTER, [store] sentinel_master)");
  }
  if (!valid_master_name(options.master_name)) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("redis sentinel: master name '{}' must be 1 to {} printable "
                                  "characters without spaces",
                                  printable(options.master_name, kQuoted), kMaxMasterNameBytes));
  }
  for (const RedisHostPort& s : options.sentinels) {
    if (!plausible_host(s.host) || s.port == 0) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("redis sentinel: invalid sentinel address '{}'",
                                    printable(address_text(s), kQuoted)));
    }
  }
  auto topology = std::make_unique<SentinelTopology>(factory, options, std::move(sentinel_tls));
  if (auto started = topology->start(); !started) return std::unexpected(started.error());
  return std::unique_ptr<Topology>(std::move(topology));
}

}  // namespace aicache::redis
