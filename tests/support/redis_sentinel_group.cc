#include "support/redis_sentinel_group.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <stdexcept>
#include <string_view>
#include <thread>

namespace aicache::testing {
namespace {

using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct ContextFree {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;
using Reply = std::unique_ptr<redisReply, ReplyFree>;

std::string flat(const redisReply& r) {
  switch (r.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return std::string(r.str, r.len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(r.integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    default:
      return "(array)";
  }
}

Reply run(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
}

// The value of `field` in a flat field/value array (SENTINEL master).
std::string field(const std::vector<std::string>& pairs, std::string_view name) {
  for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
    if (pairs[i] == name) return pairs[i + 1];
  }
  return {};
}

// "name:value" of an INFO text.
std::string info_field(const std::string& info, std::string_view name) {
  const std::string key = std::string(name) + ":";
  const auto at = info.find(key);
  if (at == std::string::npos) return {};
  const auto end = info.find_first_of("\r\n", at);
  return info.substr(at + key.size(), end - at - key.size());
}

}  // namespace

std::vector<std::string> RedisSentinelGroup::command(std::uint16_t port,
                                                     const std::vector<std::string>& args,
                                                     const std::string& password,
                                                     const std::string& user) {
  return commands(port, {args}, password, user);
}

std::vector<std::string> RedisSentinelGroup::commands(
    std::uint16_t port, const std::vector<std::vector<std::string>>& list,
    const std::string& password, const std::string& user) {
  const timeval tv{1, 0};
  Context c(redisConnectWithTimeout("127.0.0.1", port, tv));
  if (!c || c->err != 0) return {"ERR cannot connect"};
  redisSetTimeout(c.get(), tv);
  if (!password.empty() || !user.empty()) {
    Reply auth = run(c.get(), user.empty() ? std::vector<std::string>{"AUTH", password}
                                           : std::vector<std::string>{"AUTH", user, password});
    if (!auth || auth->type == REDIS_REPLY_ERROR) return {"ERR AUTH failed"};
  }
  Reply r;
  for (const auto& args : list) {
    r = run(c.get(), args);
    if (!r) return {"ERR no reply"};
  }
  if (!r) return {"ERR no command"};
  if (r->type == REDIS_REPLY_ERROR) return {"ERR " + flat(*r)};
  if (r->type != REDIS_REPLY_ARRAY) return {flat(*r)};
  std::vector<std::string> out;
  for (std::size_t i = 0; i < r->elements; ++i) out.push_back(flat(*r->element[i]));
  return out;
}

RedisSentinelGroup::RedisSentinelGroup(RedisSentinelGroupOptions options)
    : options_(std::move(options)) {
  servers_.push_back(std::make_unique<RedisServer>(RedisServerOptions{.tls = options_.tls}));
  // With TLS the sentinels watch (and name) the master's TLS port.
  const std::uint16_t master_port = options_.tls ? servers_[0]->tls_port() : servers_[0]->port();
  const auto deadline = SteadyClock::now() + options_.ready_timeout;
  if (options_.failover_ready) start_replica(deadline);

  const std::string& name = options_.master_name;
  std::string conf = fmt::format(
      "sentinel monitor {0} 127.0.0.1 {1} 2\n"
      "sentinel down-after-milliseconds {0} {2}\n"
      "sentinel failover-timeout {0} {3}\n"
      "sentinel parallel-syncs {0} 1\n",
      name, master_port, options_.down_after.count(), options_.failover_timeout.count());
  if (!options_.sentinel_user.empty()) {
    // The user alone: the default user is off, so only AUTH user password
    // gets in.
    conf += fmt::format(
        "user default off\nuser {0} on >{1} ~* &* +@all\n"
        "sentinel sentinel-user {0}\nsentinel sentinel-pass {1}\n",
        options_.sentinel_user, options_.sentinel_password);
  } else if (!options_.sentinel_password.empty()) {
    conf +=
        fmt::format("requirepass {0}\nsentinel sentinel-pass {0}\n", options_.sentinel_password);
  }
  for (std::size_t i = 0; i < kSentinels; ++i) {
    RedisServerOptions s;
    s.config_text = conf;
    s.sentinel = true;
    s.tls = options_.tls;
    if (options_.tls) s.extra_args = {"--tls-replication", "yes"};
    sentinels_.push_back(std::make_unique<RedisServer>(s));
  }
  while (options_.failover_ready && !sentinels_ready()) {
    if (SteadyClock::now() > deadline) {
      throw std::runtime_error("the sentinels did not find each other and the replica; log:\n" +
                               sentinels_[0]->read_log());
    }
    std::this_thread::sleep_for(20ms);
  }
}

RedisSentinelGroup::~RedisSentinelGroup() {
  // The sentinels first: no failover while the servers go.
  sentinels_.clear();
  servers_.clear();
}

void RedisSentinelGroup::start_replica(std::chrono::steady_clock::time_point deadline) {
  RedisServerOptions replica;
  replica.tls = options_.tls;
  if (options_.tls) {
    replica.extra_args = {"--tls-replication", "yes", "--replicaof", "127.0.0.1",
                          std::to_string(servers_[0]->tls_port())};
  } else {
    replica.extra_args = {"--replicaof", "127.0.0.1", std::to_string(servers_[0]->port())};
  }
  servers_.push_back(std::make_unique<RedisServer>(replica));
  // Replicating before the sentinels start: a sentinel asks the master for
  // its replicas at once, then only every 10 s.
  for (;;) {
    const auto info = command(servers_[1]->port(), {"INFO", "replication"});
    if (!info.empty() && info_field(info[0], "master_link_status") == "up") return;
    if (SteadyClock::now() > deadline) throw std::runtime_error("the replica did not sync");
    std::this_thread::sleep_for(10ms);
  }
}

bool RedisSentinelGroup::sentinels_ready() const {
  for (const auto& s : sentinels_) {
    const auto master = command(s->port(), {"SENTINEL", "master", options_.master_name},
                                options_.sentinel_password, options_.sentinel_user);
    if (field(master, "num-slaves") != "1" || field(master, "num-other-sentinels") != "2") {
      return false;
    }
  }
  return true;
}

RedisSentinelOptions RedisSentinelGroup::sentinel_options() const {
  RedisSentinelOptions out;
  for (const auto& s : sentinels_) {
    out.sentinels.push_back({"127.0.0.1", options_.tls ? s->tls_port() : s->port()});
  }
  out.master_name = options_.master_name;
  out.password = options_.sentinel_password;
  out.username = options_.sentinel_user;
  return out;
}

std::string RedisSentinelGroup::sentinel_list() const {
  std::string out;
  for (const auto& s : sentinels_) {
    if (!out.empty()) out += ',';
    out += fmt::format("127.0.0.1:{}", options_.tls ? s->tls_port() : s->port());
  }
  return out;
}

std::optional<std::size_t> RedisSentinelGroup::current_master() const {
  for (const auto& s : sentinels_) {
    if (!s->running()) continue;
    const auto addr =
        command(s->port(), {"SENTINEL", "get-master-addr-by-name", options_.master_name},
                options_.sentinel_password, options_.sentinel_user);
    if (addr.size() != 2) continue;
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      const std::uint16_t named = options_.tls ? servers_[i]->tls_port() : servers_[i]->port();
      if (!servers_[i]->running() || addr[1] != std::to_string(named)) continue;
      const auto role = command(servers_[i]->port(), {"ROLE"});
      if (!role.empty() && role[0] == "master") return i;
    }
  }
  return std::nullopt;
}

bool RedisSentinelGroup::wait_for_master(std::size_t index,
                                         std::chrono::milliseconds timeout) const {
  const auto deadline = SteadyClock::now() + timeout;
  while (current_master() != index) {
    if (SteadyClock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

}  // namespace aicache::testing
