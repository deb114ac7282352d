// The redis-server a benchmark binary runs against (started on first use,
// killed when the process exits), and a RedisStore on it.
#pragma once

#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "aicache/redis_store.h"
#include "support/redis_server.h"

namespace aicache::bench {

inline testing::RedisServer& Server() {
  static testing::RedisServer server;
  return server;
}

// A RedisStore on Server() with a near cache of that many bytes (0: none).
// Throws: a benchmark has no failure path worth taking.
inline std::shared_ptr<Store> MakeRedisStore(std::size_t near_cache_max_bytes) {
  auto endpoint = parse_redis_url(Server().url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.near_cache_max_bytes = near_cache_max_bytes;
  auto s = make_redis_store(options);
  if (!s) throw std::runtime_error(s.error().to_string());
  return std::move(*s);
}

// One raw hiredis connection to a loopback port: the server's own cost, the
// baseline the store's figures are set against.
class RawRedis {
 public:
  explicit RawRedis(std::uint16_t port) : c_(redisConnect("127.0.0.1", port)) {
    if (c_ == nullptr || c_->err != 0) throw std::runtime_error("raw connect failed");
  }
  ~RawRedis() { redisFree(c_); }
  RawRedis(const RawRedis&) = delete;
  RawRedis& operator=(const RawRedis&) = delete;

  // Sends one command and reads its reply; throws on a transport failure or
  // an error reply.
  void command(std::initializer_list<std::string_view> args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (std::string_view a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (reply == nullptr) throw std::runtime_error("raw command failed");
    const bool error = reply->type == REDIS_REPLY_ERROR;
    benchmark::DoNotOptimize(reply->type);
    freeReplyObject(reply);
    if (error) throw std::runtime_error("raw command answered an error");
  }

 private:
  redisContext* c_;
};

}  // namespace aicache::bench
