#include "redis/resolver.h"

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

namespace aicache::redis {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<testing::LookupFn> g_lookup{nullptr};
std::atomic<int> g_abandoned{0};

// What the caller and the lookup's thread share. Whichever of the two
// finishes last frees it (shared_ptr); the addresses found go to the caller
// if it still waits, else the thread frees them.
struct PendingLookup {
  std::string host;
  std::string service;
  addrinfo hints{};
  testing::LookupFn lookup = nullptr;

  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;       // guarded by mutex
  bool abandoned = false;  // guarded by mutex: the caller gave up
  int rc = 0;              // guarded by mutex
  int saved_errno = 0;     // guarded by mutex
  AddrInfoPtr found;       // guarded by mutex
};

std::expected<AddrInfoPtr, RedisFailure> outcome(const std::string& host, int rc, int saved_errno,
                                                 AddrInfoPtr found) {
  if (rc == 0) return found;
  if (rc == EAI_SYSTEM)
    return std::unexpected(io_failure(RedisFailure::Kind::kConnect, saved_errno));
  return std::unexpected(resolve_failure(host, rc));
}

void run_lookup(const std::shared_ptr<PendingLookup>& p) {
  addrinfo* found = nullptr;
  const int rc = p->lookup(p->host.c_str(), p->service.c_str(), &p->hints, &found);
  const int saved_errno = errno;
  AddrInfoPtr owned(found);
  std::unique_lock lock(p->mutex);
  if (p->abandoned) {
    lock.unlock();
    owned.reset();
    g_abandoned.fetch_sub(1, std::memory_order_acq_rel);
    return;
  }
  p->done = true;
  p->rc = rc;
  p->saved_errno = saved_errno;
  p->found = std::move(owned);
  // Under the lock: the caller may return (and drop its reference) as soon
  // as it sees `done`; ours keeps the state alive until we return anyway.
  p->done_cv.notify_one();
}

}  // namespace

void AddrInfoDeleter::operator()(addrinfo* a) const noexcept {
  if (a != nullptr) ::freeaddrinfo(a);
}

std::expected<AddrInfoPtr, RedisFailure> resolve(const std::string& host, std::uint16_t port,
                                                 std::optional<Clock::time_point> deadline,
                                                 std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  const std::string service = std::to_string(port);
  addrinfo* found = nullptr;
  // An address needs no lookup, no thread: it is only parsed.
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != EAI_NONAME) return outcome(host, rc, errno, AddrInfoPtr(found));
  hints.ai_flags = AI_NUMERICSERV;

  testing::LookupFn lookup = g_lookup.load(std::memory_order_acquire);
  if (lookup == nullptr) lookup = &::getaddrinfo;
  if (!deadline) {
    rc = lookup(host.c_str(), service.c_str(), &hints, &found);
    return outcome(host, rc, errno, AddrInfoPtr(found));
  }
  if (Clock::now() >= *deadline) return std::unexpected(resolve_timeout_failure(host, timeout));
  if (const int pending = g_abandoned.load(std::memory_order_acquire);
      pending >= kMaxAbandonedLookups) {
    return std::unexpected(resolve_backlog_failure(host, pending));
  }

  auto p = std::make_shared<PendingLookup>();
  p->host = host;
  p->service = service;
  p->hints = hints;
  p->lookup = lookup;
  try {
    std::thread([p] { run_lookup(p); }).detach();
  } catch (const std::system_error& e) {
    return std::unexpected(io_failure(RedisFailure::Kind::kConnect, e.code().value()));
  }
  std::unique_lock lock(p->mutex);
  if (!p->done_cv.wait_until(lock, *deadline, [&] { return p->done; })) {
    // The thread is still in the lookup; it frees what it finds.
    p->abandoned = true;
    g_abandoned.fetch_add(1, std::memory_order_acq_rel);
    return std::unexpected(resolve_timeout_failure(host, timeout));
  }
  return outcome(host, p->rc, p->saved_errno, std::move(p->found));
}

namespace testing {

LookupFn set_lookup(LookupFn fn) noexcept { return g_lookup.exchange(fn); }

int abandoned_lookups() noexcept { return g_abandoned.load(); }

}  // namespace testing
}  // namespace aicache::redis
