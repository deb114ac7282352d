#include "redis/tracker.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <string_view>
#include <utility>

namespace aicache::redis {
namespace {

constexpr std::string_view kChannel = "__redis__:invalidate";

bool is_str(const redisReply* r, std::string_view s) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
         std::string_view(r->str, r->len) == s;
}

}  // namespace

Tracker::Tracker(TrackerOptions options, NearCache& near)
    : options_(std::move(options)), near_(near) {
  thread_ = std::thread([this] { run(); });
}

Tracker::~Tracker() {
  stop_.stop();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::int64_t> Tracker::client_id_for(std::uint64_t state) const {
  std::lock_guard lock(mu_);
  if (!NearCache::live(state) || live_state_ != state || near_.state() != state) {
    return std::nullopt;
  }
  return client_id_;
}

bool Tracker::wait_live(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  live_cv_.wait_for(lock, timeout,
                    [this] { return first_attempt_done_ || NearCache::live(near_.state()); });
  return NearCache::live(near_.state());
}

void Tracker::run() {
  std::chrono::milliseconds delay = options_.reconnect_min;
  while (!stop_.stopped()) {
    const std::uint64_t before = connects_.load();
    session();
    {
      std::lock_guard lock(mu_);
      first_attempt_done_ = true;
    }
    live_cv_.notify_all();
    if (stop_.stopped()) break;
    // A session that got live resets the delay; one that never did doubles it.
    delay = connects_.load() != before ? options_.reconnect_min
                                       : std::min(delay * 2, options_.reconnect_max);
    if (!stop_.pause(delay)) break;
  }
  go_down();
}

void Tracker::go_down() {
  {
    std::lock_guard lock(mu_);
    client_id_ = 0;
    live_state_ = 0;
  }
  near_.tracking_down();
}

void Tracker::session() {
  auto opened = RedisConnection::open(options_.connection);
  if (!opened) return;
  RedisConnection& conn = **opened;

  constexpr std::string_view kClientId[] = {"CLIENT", "ID"};
  auto id = conn.command(kClientId);
  if (!id || (*id)->type != REDIS_REPLY_INTEGER) return;
  if (options_.bcast_prefix) {
    const std::string self = std::to_string((*id)->integer);
    const std::string_view bcast[] = {"CLIENT", "TRACKING", "on",     "REDIRECT",
                                      self,     "BCAST",    "PREFIX", *options_.bcast_prefix};
    auto on = conn.command(bcast);
    if (!on || !is_str(on->get(), "OK")) return;
  }
  const std::string_view subscribe[] = {"SUBSCRIBE", kChannel};
  auto subscribed = conn.command(subscribe);
  if (!subscribed) return;

  {
    std::lock_guard lock(mu_);
    near_.tracking_up();
    client_id_ = (*id)->integer;
    live_state_ = near_.state();
    first_attempt_done_ = true;
  }
  connects_.fetch_add(1);
  live_cv_.notify_all();

  conn.listen(options_.ping_interval, stop_.fd(), stop_.flag(),
              [this](const redisReply& m) { handle(m); });
  go_down();
}

void Tracker::handle(const redisReply& m) {
  messages_.fetch_add(1, std::memory_order_relaxed);
  // ["message", "__redis__:invalidate", [key...] | nil]; also
  // ["subscribe", ...] and ["pong", ""], which only prove liveness.
  if (m.type != REDIS_REPLY_ARRAY || m.elements < 3 || !is_str(m.element[0], "message")) return;
  const redisReply* payload = m.element[2];
  if (payload->type == REDIS_REPLY_NIL) {
    near_.invalidate_all(true);
    return;
  }
  if (payload->type == REDIS_REPLY_ARRAY) {
    for (std::size_t i = 0; i < payload->elements; ++i) {
      const redisReply* k = payload->element[i];
      if (k->type != REDIS_REPLY_STRING) continue;
      const std::string_view key(k->str, k->len);
      near_.invalidate(key);
      if (options_.after_invalidate) options_.after_invalidate(key);
    }
    return;
  }
  if (payload->type == REDIS_REPLY_STRING) {  // a single key, as some versions send
    const std::string_view key(payload->str, payload->len);
    near_.invalidate(key);
    if (options_.after_invalidate) options_.after_invalidate(key);
  }
}

}  // namespace aicache::redis
