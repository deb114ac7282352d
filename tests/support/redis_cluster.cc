#include "support/redis_cluster.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "support/child_process.h"

namespace aicache::testing {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;
using Reply = std::unique_ptr<redisReply, ReplyFree>;

Reply run(std::uint16_t port, const std::vector<std::string>& args) {
  const timeval tv{5, 0};
  Context c(redisConnectWithTimeout("127.0.0.1", port, tv));
  if (!c || c->err != 0) {
    throw std::runtime_error(fmt::format("cannot connect to 127.0.0.1:{}", port));
  }
  redisSetTimeout(c.get(), tv);
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  Reply reply(static_cast<redisReply*>(
      redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
  if (!reply) throw std::runtime_error(fmt::format("127.0.0.1:{}: {}", port, c->errstr));
  if (reply->type == REDIS_REPLY_ERROR) {
    throw std::runtime_error(fmt::format("127.0.0.1:{}: {}: {}", port, args.front(),
                                         std::string(reply->str, reply->len)));
  }
  return reply;
}

// The program's path, looked up in $PATH (run_child execs a path).
std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / name;
    std::error_code ec;
    if (std::filesystem::exists(candidate, ec)) return candidate.string();
  }
  throw std::runtime_error(name + " not found in PATH");
}

// "a-b" or "n" of a CLUSTER NODES line; false for "[slot->-id]" (migrating).
bool slot_range(std::string_view field, unsigned& first, unsigned& last) {
  if (field.empty() || field.front() == '[') return false;
  const auto dash = field.find('-');
  first = static_cast<unsigned>(std::stoul(std::string(field.substr(0, dash))));
  last = dash == std::string_view::npos
             ? first
             : static_cast<unsigned>(std::stoul(std::string(field.substr(dash + 1))));
  return true;
}

struct NodeLine {
  std::uint16_t port = 0;
  bool master = false;
  bool failed = false;
  std::vector<std::pair<unsigned, unsigned>> slots;
};

std::vector<NodeLine> parse_nodes(const std::string& text) {
  std::vector<NodeLine> out;
  std::stringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::stringstream fields(line);
    std::vector<std::string> f;
    std::string field;
    while (fields >> field) f.push_back(field);
    if (f.size() < 8) continue;
    NodeLine n;
    // ip:port@cport[,hostname]
    const std::string& addr = f[1];
    const auto colon = addr.rfind(':', addr.find('@'));
    n.port = static_cast<std::uint16_t>(std::stoul(addr.substr(colon + 1)));
    n.master = f[2].find("master") != std::string::npos;
    n.failed = f[2].find("fail") != std::string::npos;
    for (std::size_t i = 8; i < f.size(); ++i) {
      unsigned first = 0;
      unsigned last = 0;
      if (slot_range(f[i], first, last)) n.slots.emplace_back(first, last);
    }
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace

RedisCluster::RedisCluster(int masters, int replicas_per_master) {
  const int count = masters * (1 + replicas_per_master);
  for (int i = 0; i < count; ++i) {
    RedisServerOptions options;
    // Relative to the server's own --dir (its TempDir).
    options.extra_args = {"--cluster-enabled",      "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "1000"};
    servers_.push_back(std::make_unique<RedisServer>(std::move(options)));
  }
  std::vector<std::string> args = {"--cluster", "create"};
  for (const std::string& seed : seeds()) args.push_back(seed);
  args.insert(args.end(),
              {"--cluster-replicas", std::to_string(replicas_per_master), "--cluster-yes"});
  const Outcome created =
      run_child(find_program("redis-cli"), args, std::filesystem::temp_directory_path());
  if (created.exit_code != 0) {
    throw std::runtime_error("redis-cli --cluster create failed:\n" + created.out + created.err);
  }
  if (!wait_ok(std::chrono::seconds(30))) {
    throw std::runtime_error("the cluster did not reach cluster_state:ok");
  }
  // Every replica's link to its master is up: a failover can then promote
  // it.
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  for (std::size_t i = 0; i < size(); ++i) {
    for (;;) {
      const std::string info = command(i, {"INFO", "replication"}).value_or("");
      if (info.find("role:master") != std::string::npos ||
          info.find("master_link_status:up") != std::string::npos) {
        break;
      }
      if (SteadyClock::now() > deadline) throw std::runtime_error("a replica did not sync");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

RedisCluster::~RedisCluster() = default;

std::vector<std::string> RedisCluster::seeds() const {
  std::vector<std::string> out;
  for (const auto& s : servers_) out.push_back(fmt::format("127.0.0.1:{}", s->port()));
  return out;
}

std::optional<std::string> RedisCluster::command(std::size_t i,
                                                 const std::vector<std::string>& args) {
  const Reply reply = run(port(i), args);
  switch (reply->type) {
    case REDIS_REPLY_NIL:
      return std::nullopt;
    case REDIS_REPLY_INTEGER:
      return std::to_string(reply->integer);
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return std::string(reply->str, reply->len);
    default:
      throw std::runtime_error(fmt::format("{}: an array reply", args.front()));
  }
}

std::vector<std::string> RedisCluster::slot_keys(std::size_t i, std::uint16_t slot,
                                                 std::size_t count) {
  const Reply reply =
      run(port(i), {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), std::to_string(count)});
  std::vector<std::string> keys;
  if (reply->type != REDIS_REPLY_ARRAY) throw std::runtime_error("GETKEYSINSLOT: not an array");
  for (std::size_t k = 0; k < reply->elements; ++k) {
    keys.emplace_back(reply->element[k]->str, reply->element[k]->len);
  }
  return keys;
}

std::string RedisCluster::id(std::size_t i) { return command(i, {"CLUSTER", "MYID"}).value(); }

std::optional<std::size_t> RedisCluster::owner_of(std::uint16_t slot, std::size_t asked) {
  for (const NodeLine& n : parse_nodes(command(asked, {"CLUSTER", "NODES"}).value_or(""))) {
    if (!n.master || n.failed) continue;
    for (const auto& [first, last] : n.slots) {
      if (slot < first || slot > last) continue;
      for (std::size_t i = 0; i < size(); ++i) {
        if (port(i) == n.port) return i;
      }
    }
  }
  return std::nullopt;
}

bool RedisCluster::wait_ok(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  for (std::size_t i = 0; i < size(); ++i) {
    if (!server(i).running()) continue;
    for (;;) {
      std::string info;
      try {
        info = command(i, {"CLUSTER", "INFO"}).value_or("");
      } catch (const std::runtime_error&) {
      }
      if (info.find("cluster_state:ok") != std::string::npos) break;
      if (SteadyClock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return true;
}

bool RedisCluster::wait_settled(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    bool settled = wait_ok(std::chrono::milliseconds(0));
    for (std::size_t i = 0; settled && i < size(); ++i) {
      if (!server(i).running()) continue;
      std::vector<NodeLine> nodes;
      try {
        nodes = parse_nodes(command(i, {"CLUSTER", "NODES"}).value_or(""));
      } catch (const std::runtime_error&) {
        settled = false;
        break;
      }
      unsigned covered = 0;
      for (const NodeLine& n : nodes) {
        bool running = false;
        for (std::size_t j = 0; j < size(); ++j) {
          running = running || (port(j) == n.port && server(j).running());
        }
        if (!n.master || n.failed || !running) continue;
        for (const auto& [first, last] : n.slots) covered += last - first + 1;
      }
      settled = covered == 16384;
    }
    if (settled) return true;
    if (SteadyClock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void RedisCluster::migrate_slot(std::uint16_t slot, std::size_t from, std::size_t to,
                                std::size_t batch, const std::function<void()>& between_batches) {
  const std::string s = std::to_string(slot);
  command(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", id(from)});
  command(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", id(to)});
  for (;;) {
    const std::vector<std::string> keys = slot_keys(from, slot, batch);
    if (keys.empty()) break;
    std::vector<std::string> args = {"MIGRATE", "127.0.0.1", std::to_string(port(to)), "", "0",
                                     "5000",    "KEYS"};
    args.insert(args.end(), keys.begin(), keys.end());
    command(from, args);
    if (between_batches) between_batches();
  }
  // The new owner first, then the old one, then the others (as redis-cli).
  command(to, {"CLUSTER", "SETSLOT", s, "NODE", id(to)});
  command(from, {"CLUSTER", "SETSLOT", s, "NODE", id(to)});
  for (std::size_t i = 0; i < size(); ++i) {
    if (i == from || i == to || !server(i).running()) continue;
    try {
      command(i, {"CLUSTER", "SETSLOT", s, "NODE", id(to)});
    } catch (const std::runtime_error&) {
      // A replica refuses SETSLOT; it learns from its master.
    }
  }
  // Until every node agrees, two may each redirect to the other (a slot
  // moved back and forth quickly: the config epochs settle over the cluster
  // bus). A master that still disagrees is told again, as `redis-cli
  // --cluster fix` would.
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  for (std::size_t i = 0; i < size(); ++i) {
    while (server(i).running() && owner_of(slot, i) != to) {
      try {
        command(i, {"CLUSTER", "SETSLOT", s, "NODE", id(to)});
      } catch (const std::runtime_error&) {
        // A replica: it follows its master.
      }
      if (SteadyClock::now() > deadline) {
        const auto owner = owner_of(slot, i);
        throw std::runtime_error(fmt::format(
            "the nodes do not agree on slot {}'s owner: node {} names {}, not {}; its view:\n{}",
            slot, i, owner ? std::to_string(*owner) : "none", to,
            command(i, {"CLUSTER", "NODES"}).value_or("")));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

}  // namespace aicache::testing
