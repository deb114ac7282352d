#include "aicache/token_manager.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <random>
#include <thread>

#include "aicache/log.h"
#include "core/try.h"

namespace aicache {

using std::chrono::milliseconds;
using std::chrono::seconds;

namespace internal {

// A stored token with its remaining validity.
struct TokenEntry {
  std::string token;
  milliseconds remaining{0};
};

struct TokenCounters {
  std::atomic<std::uint64_t> hits{0}, fetches{0}, failures_retryable{0},
      failures_configuration{0}, failures_quota{0}, waits{0}, invalidations{0};
};

// One registered app: its provider, its keys, and the in-process single
// flight. `mutex` guards the fields between it and the counters; counters are
// atomics so stats() never waits for a fetch.
struct TokenApp {
  std::unique_ptr<TokenProvider> provider;
  std::string channel;
  std::string key;  // app key: app id, or WeCom's corp.agent
  // The token, its lease and refresh()'s limits in the store (the records
  // are described in token_manager.h and assistant_cache.h).
  std::optional<TokenSlot> slot;
  milliseconds margin{0};      // a request refreshes below this
  milliseconds refresh_at{0};  // the refresher refreshes below this
  std::shared_ptr<const Clock> clock;  // the manager's

  // When the stored token expires, as this process last read or wrote it
  // (Clock::TimePoint ticks), so that stats() need not read the store:
  // kExpiryUnknown when not seen, seen absent, or removed here since;
  // kExpiryNever for a token stored without a TTL. Moved only by a second
  // or more (or to and from those two), so the calls reading the same token
  // do not all write it. Mutable: read_entry() notes what it read.
  static constexpr Clock::TimePoint::rep kExpiryUnknown =
      std::numeric_limits<Clock::TimePoint::rep>::min();
  static constexpr Clock::TimePoint::rep kExpiryNever = kExpiryUnknown + 1;
  mutable std::atomic<Clock::TimePoint::rep> seen_expiry{kExpiryUnknown};

  std::mutex mutex;
  std::condition_variable done;
  bool in_flight = false;
  std::uint64_t generation = 0;
  std::optional<Result<std::optional<TokenEntry>>> last_result;
  int consecutive_failures = 0;
  Clock::TimePoint cooldown_until{};  // no fetch before this, after a failure
  std::optional<Error> cooldown_error;
  Clock::TimePoint next_refresh_at{};  // no early refresh before this (same token)
  std::optional<Clock::WallTimePoint> last_fetch;
  std::string last_error;

  // Shared with the app that replaces this one when its credentials change
  // (TokenManager::reconfigure), so the figures go on from where they were
  // and never go backwards, whichever of the two a call in flight counts on.
  std::shared_ptr<TokenCounters> counters = std::make_shared<TokenCounters>();
};

// The fetch listeners (TokenManager::on_fetch). They are called under the
// mutex, so remove_fetch_listener() can promise that a removed listener is
// not running; fetches are rare (a few an hour per app), so serialising the
// calls costs nothing.
struct FetchListeners {
  std::mutex mutex;
  std::uint64_t next_id = 0;                                           // guarded by mutex
  std::vector<std::pair<std::uint64_t, TokenManager::FetchListener>> listeners;  // guarded

  void notify(const TokenFetchEvent& event) {
    std::lock_guard lock(mutex);
    for (const auto& [id, listener] : listeners) listener(event);
  }
};

struct TokenRefresher {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;  // guarded by mutex
  std::thread thread;
};

}  // namespace internal

namespace {

using internal::TokenApp;
using internal::TokenEntry;

// The lease value left behind by a failed refresh: "failed <code> <message>".
constexpr std::string_view kFailureMarker = "failed ";

std::string default_owner_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::random_device random;
  return fmt::format("{}:{}:{:08x}", host[0] ? host : "host", ::getpid(), random());
}

// WeChat's stable API hands out the same token, with what is left of its
// life, until the last 5 minutes; only a fetch inside that window gets a new
// one, so refreshing earlier would just fetch the old token again.
seconds reissue_window(const AppCredentials& app) {
  if (app.channel == Channel::kWeChat && effective_api(app) == "stable") return seconds(300);
  return seconds(0);
}

Token to_token(const TokenEntry& entry) {
  return {entry.token, std::chrono::duration_cast<seconds>(entry.remaining)};
}

// Notes `expiry` (TokenApp::seen_expiry's encoding) as the stored token's.
void note_expiry(const TokenApp& app, Clock::TimePoint::rep expiry) {
  constexpr Clock::TimePoint::rep kSlack =
      std::chrono::duration_cast<Clock::TimePoint::duration>(seconds(1)).count();
  auto is_time = [](Clock::TimePoint::rep e) {
    return e != TokenApp::kExpiryUnknown && e != TokenApp::kExpiryNever;
  };
  const Clock::TimePoint::rep before = app.seen_expiry.load(std::memory_order_relaxed);
  if (before == expiry) return;
  if (is_time(before) && is_time(expiry) && before - kSlack < expiry && expiry < before + kSlack) {
    return;
  }
  app.seen_expiry.store(expiry, std::memory_order_relaxed);
}

// A token this process read or wrote, with `remaining` validity from now.
void note_remaining(const TokenApp& app, milliseconds remaining) {
  note_expiry(app, (app.clock->now() + remaining).time_since_epoch().count());
}

// The app's stored token; `latest`: as of now, never a lagging copy
// (TokenSlot::read_latest).
Result<std::optional<TokenEntry>> read_entry(const TokenApp& app, bool latest = false) {
  auto stored = latest ? app.slot->read_latest() : app.slot->read();
  if (stored.failed()) return std::unexpected(std::move(stored).error());
  if (!stored) {
    note_expiry(app, TokenApp::kExpiryUnknown);
    return std::nullopt;
  }
  if (stored->ttl.state == KeyTtl::State::kExpiring) {
    note_remaining(app, stored->ttl.remaining);
  } else {
    note_expiry(app, TokenApp::kExpiryNever);
  }
  // A platform token never lives forever: one stored without a TTL (by hand)
  // is served, but as due for refresh.
  const milliseconds remaining =
      stored->ttl.state == KeyTtl::State::kExpiring ? stored->ttl.remaining : app.margin;
  return TokenEntry{std::move(*stored).token, remaining};
}

// A flight's token, fetched and stored or read by it, as seen.
void note_flown(const TokenApp& app, const Result<std::optional<TokenEntry>>& flown) {
  if (flown && *flown) note_remaining(app, (*flown)->remaining);
}

Error error_from_marker(std::string_view marker, const TokenApp& app) {
  marker.remove_prefix(kFailureMarker.size());
  const bool config = marker.starts_with(to_string(ErrorCode::kConfig));
  if (auto space = marker.find(' '); space != std::string_view::npos) marker.remove_prefix(space + 1);
  // The marker comes from the store, which other processes write: filter it
  // as the provider filters what the platform sent.
  return Error{config ? ErrorCode::kConfig : ErrorCode::kUpstream,
               fmt::format("token fetch for {}/{} failed in another process and is paused: {}",
                           app.channel, app.key, printable(marker, kMaxFetchMessageBytes))};
}

// How long until the platforms' daily quotas reset: midnight in China
// Standard Time (UTC+8, no daylight saving), the day of WeChat, WeCom and
// DingTalk alike.
milliseconds until_platform_midnight(Clock::WallTimePoint now) {
  constexpr milliseconds kDay = std::chrono::hours(24);
  constexpr milliseconds kUtcOffset = std::chrono::hours(8);
  const milliseconds local =
      std::chrono::duration_cast<milliseconds>(now.time_since_epoch()) + kUtcOffset;
  milliseconds into_day = local % kDay;
  if (into_day < milliseconds(0)) into_day += kDay;
  return kDay - into_day;
}

// Whole seconds to wait, rounded up and at least one (what Retry-After says).
seconds retry_seconds(milliseconds wait) {
  return std::max(std::chrono::ceil<seconds>(wait), seconds(1));
}

std::unexpected<Error> rate_limited(std::string message, seconds retry_after) {
  Error error{ErrorCode::kRateLimited, std::move(message)};
  error.retry_after = retry_after;
  return std::unexpected(std::move(error));
}

// Threat model, finding 2: the limits on refresh() (token_manager.h). OK
// when the refresh may go ahead; the interval is then taken.
Status admit_refresh(const TokenManagerOptions& options, const TokenApp& app,
                     bool platform_force) {
  const TokenSlot& slot = *app.slot;
  static std::atomic<std::uint64_t> admission_id{0};
  const std::string holder = fmt::format("{}:refresh{}", options.owner_id, ++admission_id);
  const bool interval = options.min_refresh_interval > seconds(0);
  if (interval) {
    AICACHE_ASSIGN_OR_RETURN(const bool taken,
                             slot.try_mark_refreshed(holder, Ttl(options.min_refresh_interval)));
    if (!taken) {
      // Expired in between: a second is a fine guess.
      milliseconds left = seconds(1);
      if (auto ttl = slot.refreshed_ttl(); ttl && ttl->state == KeyTtl::State::kExpiring) {
        left = ttl->remaining;
      } else if (ttl && ttl->state == KeyTtl::State::kPersistent) {
        left = options.min_refresh_interval;
      }
      const seconds wait = retry_seconds(left);
      return rate_limited(
          fmt::format("refresh of {}/{} refused: the last one asked for was less than {} s ago "
                      "(min_refresh_interval); try again in {} s",
                      app.channel, app.key, options.min_refresh_interval.count(), wait.count()),
          wait);
    }
  }
  if (!platform_force) return {};

  const milliseconds reset = until_platform_midnight(options.clock->wall_now());
  std::int64_t used = 0;
  if (options.forced_refreshes_per_day > 0) {
    auto counted = slot.count_forced(Ttl(reset));
    if (!counted) {
      if (interval) (void)slot.unmark_refreshed(holder);
      return std::unexpected(std::move(counted).error());
    }
    used = *counted;
  }
  if (options.forced_refreshes_per_day == 0 || used > options.forced_refreshes_per_day) {
    // Nothing went upstream: a plain refresh may still go ahead.
    if (interval) (void)slot.unmark_refreshed(holder);
    const seconds wait = retry_seconds(reset);
    return rate_limited(
        fmt::format("forced refresh of {}/{} refused: {} a day are allowed "
                    "(forced_refreshes_per_day) and today's are used; they reset at midnight "
                    "China time, in {} s",
                    app.channel, app.key, options.forced_refreshes_per_day, wait.count()),
        wait);
  }
  return {};
}

// What a caller asks of a flight.
struct FlightRequest {
  // A stored token with more than this left is good enough.
  milliseconds refresh_below;
  // False: the caller holds a valid token and only helps the refresh along if
  // nobody else is at it; the flight then never waits.
  bool wait;
  bool platform_force;
};

// The refresh of one app, within a process and across processes. Stateless
// apart from the app it works on.
class Flight {
 public:
  Flight(const TokenManagerOptions& options, internal::FetchListeners& listeners, TokenApp& app)
      : options_(options), listeners_(listeners), app_(app), slot_(*app.slot) {}

  // In-process single flight: the first caller leads, the others wait for its
  // result. Returns nullopt when `wait` is false and there was nothing to do.
  Result<std::optional<TokenEntry>> run(FlightRequest request) {
    std::unique_lock lock(app_.mutex);
    if (app_.in_flight) {
      if (!request.wait) return std::nullopt;
      app_.counters->waits.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t generation = app_.generation;
      if (!app_.done.wait_for(lock, options_.wait_timeout,
                              [&] { return app_.generation != generation; })) {
        return timed_out();
      }
      return *app_.last_result;
    }
    const auto now = options_.clock->now();
    if (now < app_.cooldown_until) {
      if (!request.wait) return std::nullopt;
      return std::unexpected(*app_.cooldown_error);
    }
    if (!request.wait && now < app_.next_refresh_at) return std::nullopt;
    app_.in_flight = true;
    lock.unlock();

    auto result = lead(request);

    lock.lock();
    app_.in_flight = false;
    ++app_.generation;
    app_.last_result = result;
    lock.unlock();
    app_.done.notify_all();
    return result;
  }

 private:
  // Cross-process single flight: fetch only with the lease in hand.
  Result<std::optional<TokenEntry>> lead(FlightRequest request) {
    const auto deadline = options_.clock->now() + options_.wait_timeout;
    const std::string owner = fmt::format("{}:{}", options_.owner_id, next_flight_id());
    bool counted_wait = false;
    for (;;) {
      AICACHE_ASSIGN_OR_RETURN(auto current, read_entry(app_));
      if (current && current->remaining > request.refresh_below) return current;

      AICACHE_ASSIGN_OR_RETURN(const bool leased, slot_.try_lease(owner, options_.lease_ttl));
      if (leased) {
        // Another process may have stored its token and released its lease
        // between our read and our add: look again before fetching, at the
        // latest value (a near copy whose invalidation is in flight, or a
        // lagging replica, could still show the token it replaced).
        auto again = read_entry(app_, true);
        if (!again || (*again && (*again)->remaining > request.refresh_below)) {
          (void)slot_.release_lease(owner);
          return again;
        }
        return fetch_under_lease(request, owner, *again);
      }

      // Another process is fetching, or cooling down after a failure.
      auto lease = slot_.lease();
      AICACHE_TRY(lease.status());
      if (lease && lease->starts_with(kFailureMarker)) {
        if (!request.wait) return std::nullopt;
        return std::unexpected(error_from_marker(*lease, app_));
      }
      if (!request.wait) return std::nullopt;
      if (!counted_wait) {
        app_.counters->waits.fetch_add(1, std::memory_order_relaxed);
        counted_wait = true;
      }
      if (options_.clock->now() >= deadline) return timed_out();
      options_.sleep(options_.poll_interval);
    }
  }

  Result<std::optional<TokenEntry>> fetch_under_lease(FlightRequest request,
                                                      const std::string& owner,
                                                      const std::optional<TokenEntry>& before) {
    const auto leased_at = options_.clock->now();
    auto fetched = fetch_with_retries(request.platform_force, leased_at);
    if (!fetched) {
      Error error = fetched.error().to_error();
      cool_down(fetched.error(), error, owner);
      return std::unexpected(std::move(error));
    }
    // Again here, for providers other than make_token_provider()'s: the
    // conversion to milliseconds and the store's expiry need a sane value.
    const milliseconds lifetime = clamp_token_lifetime(fetched->expires_in);
    auto stored = slot_.write(fetched->access_token, Ttl(lifetime));
    (void)slot_.release_lease(owner);
    if (!stored && stored.error().code == ErrorCode::kInvalidArgument) {
      // A provider of the caller's handed back something that is no token
      // (not printable ASCII, or too long): the upstream's fault, not the
      // request's. The message names the position, never the content.
      return make_error(ErrorCode::kUpstream,
                        fmt::format("token fetch for {}/{} returned an access token that cannot "
                                    "be stored: {}",
                                    app_.channel, app_.key, stored.error().message));
    }
    AICACHE_TRY(stored);

    std::lock_guard lock(app_.mutex);
    app_.consecutive_failures = 0;
    app_.cooldown_until = {};
    app_.cooldown_error.reset();
    app_.last_fetch = options_.clock->wall_now();
    app_.last_error.clear();
    // The platform gave back the token we had, with little life left: it will
    // not issue a new one before its reissue window, so don't ask again until
    // half of what is left has passed.
    app_.next_refresh_at = {};
    if (before && before->token == fetched->access_token && lifetime <= app_.refresh_at) {
      app_.next_refresh_at = options_.clock->now() + lifetime / 2;
    }
    return TokenEntry{std::move(fetched->access_token), lifetime};
  }

  std::expected<FetchedToken, FetchError> fetch_with_retries(bool platform_force,
                                                             Clock::TimePoint leased_at) {
    std::mt19937 jitter(std::random_device{}());
    milliseconds backoff = options_.backoff_initial;
    for (int attempt = 1;; ++attempt) {
      app_.counters->fetches.fetch_add(1, std::memory_order_relaxed);
      const auto started = std::chrono::steady_clock::now();
      auto fetched = app_.provider->fetch(platform_force);
      TokenFetchEvent event{.channel = app_.channel,
                            .app_key = app_.key,
                            .duration = std::chrono::steady_clock::now() - started};
      if (!fetched) event.failure = fetched.error().kind;
      listeners_.notify(event);
      if (fetched) return fetched;
      count_failure(fetched.error().kind);
      if (fetched.error().kind != FetchFailure::kRetryable || attempt >= options_.max_attempts) {
        return fetched;
      }
      const auto wait = backoff + milliseconds(std::uniform_int_distribution<std::int64_t>(
                                      0, backoff.count() / 2)(jitter));
      // Never outlive the lease: another process would start fetching too.
      if (options_.clock->now() + wait + options_.http.total_timeout >
          leased_at + options_.lease_ttl) {
        return fetched;
      }
      options_.sleep(wait);
      backoff = std::min(backoff * 2, options_.backoff_max);
    }
  }

  void count_failure(FetchFailure kind) {
    switch (kind) {
      case FetchFailure::kConfiguration: app_.counters->failures_configuration.fetch_add(1); break;
      case FetchFailure::kQuotaExceeded: app_.counters->failures_quota.fetch_add(1); break;
      default: app_.counters->failures_retryable.fetch_add(1); break;
    }
  }

  // After a failed refresh nobody fetches this app again for a while: this
  // process by its cooldown, the others by the failure marker left in place
  // of the lease for as long.
  void cool_down(const FetchError& failure, const Error& error, const std::string& owner) {
    milliseconds pause;
    {
      std::lock_guard lock(app_.mutex);
      ++app_.consecutive_failures;
      switch (failure.kind) {
        case FetchFailure::kConfiguration: pause = options_.config_error_pause; break;
        case FetchFailure::kQuotaExceeded: pause = options_.quota_pause; break;
        default: {
          pause = options_.backoff_initial;
          for (int i = 1; i < app_.consecutive_failures && pause < options_.backoff_max; ++i) {
            pause *= 2;
          }
          pause = std::min(pause, options_.backoff_max);
        }
      }
      app_.cooldown_until = options_.clock->now() + pause;
      app_.cooldown_error = error;
      app_.last_error = error.message;
    }
    log_message(LogLevel::kWarning,
                fmt::format("token refresh for {}/{} failed ({}); no new fetch for {} ms: {}",
                            app_.channel, app_.key, to_string(failure.kind), pause.count(),
                            error.message));
    auto released = slot_.release_lease(owner);
    if (released && *released && pause > milliseconds(0)) {
      (void)slot_.try_lease(
          fmt::format("{}{} {}", kFailureMarker, to_string(error.code), error.message), pause);
    }
  }

  std::unexpected<Error> timed_out() const {
    return std::unexpected(Error{
        ErrorCode::kTimeout, fmt::format("waited {} ms for the token of {}/{} to be fetched",
                                         options_.wait_timeout.count(), app_.channel, app_.key)});
  }

  static std::uint64_t next_flight_id() {
    static std::atomic<std::uint64_t> id{0};
    return ++id;
  }

  const TokenManagerOptions& options_;
  internal::FetchListeners& listeners_;
  TokenApp& app_;
  const TokenSlot& slot_;
};

}  // namespace

// --- construction and registration --------------------------------------------

Result<std::shared_ptr<TokenManager>> TokenManager::create(std::shared_ptr<AssistantCache> cache,
                                                           TokenManagerOptions options) {
  if (!cache) return make_error(ErrorCode::kInvalidArgument, "TokenManager needs a cache");
  if (options.refresh_margin.count() < 0 || options.refresh_lead.count() < 0 ||
      options.lease_ttl <= milliseconds(0) || options.wait_timeout <= milliseconds(0) ||
      options.poll_interval <= milliseconds(0) || options.max_attempts < 1 ||
      options.backoff_initial < milliseconds(0) || options.backoff_max < options.backoff_initial ||
      options.min_refresh_interval.count() < 0 ||
      options.min_refresh_interval > std::chrono::hours(24) ||
      options.forced_refreshes_per_day < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "token manager options: margins and forced_refreshes_per_day must be >= 0, "
                      "min_refresh_interval 0 s to 24 h, lease, wait and poll "
                      "durations > 0, max_attempts >= 1, backoff_max >= backoff_initial");
  }
  if (!options.clock) options.clock = Clock::real();
  if (!options.sleep) {
    options.sleep = [](std::chrono::nanoseconds d) { std::this_thread::sleep_for(d); };
  }
  if (options.owner_id.empty()) options.owner_id = default_owner_id();
  return std::shared_ptr<TokenManager>(new TokenManager(std::move(cache), std::move(options)));
}

TokenManager::TokenManager(std::shared_ptr<AssistantCache> cache, TokenManagerOptions options)
    : cache_(std::move(cache)),
      options_(std::move(options)),
      listeners_(std::make_unique<internal::FetchListeners>()) {}

TokenManager::~TokenManager() { stop_refresher(); }

std::string TokenManager::app_key(const AppCredentials& app) {
  if (app.channel == Channel::kWeCom && !app.agent_id.empty()) {
    return fmt::format("{}.{}", app.app_id, app.agent_id);
  }
  return app.app_id;
}

Status TokenManager::add_app(AppCredentials app) {
  AICACHE_TRY(validate(app));
  return add(make_token_provider(std::move(app), options_.http));
}

Status TokenManager::add_app(std::unique_ptr<TokenProvider> provider) {
  if (!provider) return make_error(ErrorCode::kInvalidArgument, "add_app needs a provider");
  return add(std::move(provider));
}

Result<std::shared_ptr<TokenApp>> TokenManager::make_app(
    std::unique_ptr<TokenProvider> provider) const {
  const AppCredentials& credentials = provider->app();
  auto app = std::make_shared<TokenApp>();
  app->channel = std::string(to_string(credentials.channel));
  app->key = app_key(credentials);
  AICACHE_ASSIGN_OR_RETURN(app->slot, cache_->token_slot(app->channel, app->key));
  app->clock = options_.clock;
  app->margin = options_.refresh_margin;
  app->refresh_at = options_.refresh_margin + options_.refresh_lead;
  if (const seconds window = reissue_window(credentials); window > seconds(0)) {
    const milliseconds inside = window - seconds(10);
    app->margin = std::min(app->margin, inside);
    app->refresh_at = std::min(app->refresh_at, inside);
  }
  app->provider = std::move(provider);
  return app;
}

Status TokenManager::add(std::unique_ptr<TokenProvider> provider) {
  AICACHE_ASSIGN_OR_RETURN(auto app, make_app(std::move(provider)));
  std::lock_guard lock(apps_mutex_);
  if (find(app->channel, app->key) != nullptr) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("token app {}/{} is already registered", app->channel, app->key));
  }
  apps_.push_back(std::move(app));
  return {};
}

namespace {

bool same_credentials(const AppCredentials& a, const AppCredentials& b) {
  return a.channel == b.channel && a.app_id == b.app_id && a.agent_id == b.agent_id &&
         a.secret == b.secret && effective_api(a) == effective_api(b) && a.base_url == b.base_url;
}

// An app replaced for new credentials keeps its figures (shared), its last
// fetch and what it saw of the stored token (the slot is the same: same
// channel and app key); not its cooldown, which the old credentials earned.
void carry_figures(TokenApp& from, TokenApp& to) {
  to.counters = from.counters;
  to.seen_expiry.store(from.seen_expiry.load(std::memory_order_relaxed), std::memory_order_relaxed);
  std::lock_guard lock(from.mutex);
  to.last_fetch = from.last_fetch;
}

}  // namespace

Result<TokenManager::AppChanges> TokenManager::reconfigure(std::vector<AppCredentials> apps) {
  // Everything that can fail, before anything changes: the checks, and the
  // new apps (providers and store slots; no I/O).
  struct Wanted {
    std::string channel, key;
    AppCredentials credentials;
  };
  std::vector<Wanted> wanted;
  wanted.reserve(apps.size());
  for (AppCredentials& credentials : apps) {
    Wanted w{std::string(to_string(credentials.channel)), app_key(credentials), {}};
    if (auto valid = validate(credentials); !valid) {
      return make_error(ErrorCode::kConfig, fmt::format("token app {}/{}: {}", w.channel, w.key,
                                                        valid.error().message));
    }
    for (const Wanted& before : wanted) {
      if (before.channel == w.channel && before.key == w.key) {
        return make_error(ErrorCode::kConfig,
                          fmt::format("token app {}/{} is configured twice", w.channel, w.key));
      }
    }
    w.credentials = std::move(credentials);
    wanted.push_back(std::move(w));
  }
  const std::vector<std::shared_ptr<TokenApp>> current = snapshot();
  auto registered_as = [&](const Wanted& w) -> std::shared_ptr<TokenApp> {
    for (const auto& app : current) {
      if (app->channel == w.channel && app->key == w.key) return app;
    }
    return nullptr;
  };
  std::vector<std::shared_ptr<TokenApp>> next;
  std::vector<std::shared_ptr<TokenApp>> recredentialed;  // the changed ones, as they will be
  AppChanges changes;
  for (Wanted& w : wanted) {
    std::shared_ptr<TokenApp> old = registered_as(w);
    if (old && same_credentials(old->provider->app(), w.credentials)) {
      next.push_back(std::move(old));
      continue;
    }
    AICACHE_ASSIGN_OR_RETURN(
        auto app, make_app(make_token_provider(std::move(w.credentials), options_.http)));
    (old ? changes.changed : changes.added).push_back(fmt::format("{}/{}", w.channel, w.key));
    if (old) {
      carry_figures(*old, *app);
      recredentialed.push_back(app);
    }
    next.push_back(std::move(app));
  }
  for (const auto& app : current) {
    if (std::none_of(wanted.begin(), wanted.end(), [&](const Wanted& w) {
          return w.channel == app->channel && w.key == app->key;
        })) {
      changes.removed.push_back(fmt::format("{}/{}", app->channel, app->key));
    }
  }

  {
    std::lock_guard lock(apps_mutex_);
    // An add_app() between the snapshot and here would be lost: the set is
    // replaced only if it is still `current`.
    if (apps_ != current) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "token apps changed during reconfigure; try again");
    }
    apps_ = std::move(next);
  }
  // A failure left by old credentials (a wrong secret) pauses fetching for
  // every process sharing the store (the marker in place of the lease): new
  // credentials deserve a fetch now. (Not for an app new to this process: a
  // failure of another process's is no reason to try again.) Outside the
  // lock; on a store error the marker simply runs out.
  for (const auto& app : recredentialed) {
    if (auto lease = app->slot->lease(); lease && lease->starts_with(kFailureMarker)) {
      (void)app->slot->release_lease(*lease);
    }
  }
  return changes;
}

// REQUIRES: apps_mutex_ held.
std::shared_ptr<TokenApp> TokenManager::find(std::string_view channel, std::string_view key) const {
  for (const auto& app : apps_) {
    if (app->channel == channel && app->key == key) return app;
  }
  return nullptr;
}

std::vector<std::shared_ptr<TokenApp>> TokenManager::snapshot() const {
  std::lock_guard lock(apps_mutex_);
  return apps_;
}

Result<std::shared_ptr<TokenApp>> TokenManager::registered(std::string_view channel,
                                                           std::string_view key) const {
  std::lock_guard lock(apps_mutex_);
  // The caller holds the app while it works on it: reconfigure() may remove
  // it from apps_ meanwhile, and the call then finishes on it.
  if (auto app = find(channel, key)) return app;
  return make_error(ErrorCode::kNotFound,
                    fmt::format("no token app {}/{} is configured", channel, key));
}

// --- tokens ----------------------------------------------------------------------

Result<Token> TokenManager::get(std::string_view channel, std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(const std::shared_ptr<TokenApp> found, registered(channel, key));
  TokenApp& app = *found;
  const auto deadline = options_.clock->now() + options_.wait_timeout;
  // The cache's token-family figures count each call once (on its first
  // pass): a hit when a stored token was served, a miss otherwise.
  for (bool first = true;; first = false) {
    AICACHE_ASSIGN_OR_RETURN(auto current, read_entry(app));
    if (current && current->remaining > app.margin) {
      app.counters->hits.fetch_add(1, std::memory_order_relaxed);
      if (first) app.slot->count_read(true);
      return to_token(*current);
    }
    const bool valid = current && current->remaining > milliseconds(0);
    auto flown = Flight(options_, *listeners_, app).run({app.margin, !valid, false});
    note_flown(app, flown);
    if (flown && *flown) {
      if (first) app.slot->count_read(false);
      return to_token(**flown);
    }
    if (valid) {
      // Within the margin: someone else is refreshing, or the platform
      // failed; the token is still good, so serve it.
      app.counters->hits.fetch_add(1, std::memory_order_relaxed);
      if (first) app.slot->count_read(true);
      return to_token(*current);
    }
    if (first) app.slot->count_read(false);
    AICACHE_TRY(flown);
    // We joined a flight that was only an early refresh with nothing to do;
    // look again.
    if (options_.clock->now() >= deadline) {
      return make_error(ErrorCode::kTimeout,
                        fmt::format("no token for {}/{} within {} ms", channel, key,
                                    options_.wait_timeout.count()));
    }
  }
}

Lookup<Token> TokenManager::get_if_fresh(std::string_view channel, std::string_view key) {
  AICACHE_ASSIGN_OR_RETURN(const std::shared_ptr<TokenApp> app, registered(channel, key));
  AICACHE_ASSIGN_OR_RETURN(auto current, read_entry(*app));
  if (!current || current->remaining <= app->margin) {
    app->slot->count_read(false);
    return std::nullopt;
  }
  app->counters->hits.fetch_add(1, std::memory_order_relaxed);
  app->slot->count_read(true);
  return to_token(*current);
}

Result<Token> TokenManager::refresh(std::string_view channel, std::string_view key,
                                    bool platform_force) {
  AICACHE_ASSIGN_OR_RETURN(const std::shared_ptr<TokenApp> app, registered(channel, key));
  AICACHE_TRY(admit_refresh(options_, *app, platform_force));
  // No stored token is good enough: "below" everything.
  AICACHE_ASSIGN_OR_RETURN(
      auto flown,
      Flight(options_, *listeners_, *app).run({milliseconds::max(), true, platform_force}));
  note_flown(*app, flown);
  if (!flown) return make_error(ErrorCode::kInternal, "refresh finished without a token");
  return to_token(*flown);
}

Result<bool> TokenManager::invalidate(std::string_view channel, std::string_view key,
                                      std::string_view bad_token) {
  AICACHE_ASSIGN_OR_RETURN(const std::shared_ptr<TokenApp> app, registered(channel, key));
  AICACHE_ASSIGN_OR_RETURN(const bool removed, app->slot->remove_if(bad_token));
  if (removed) {
    app->counters->invalidations.fetch_add(1, std::memory_order_relaxed);
    note_expiry(*app, TokenApp::kExpiryUnknown);
    std::lock_guard lock(app->mutex);
    app->next_refresh_at = {};
  }
  return removed;
}

std::size_t TokenManager::refresh_due() {
  std::size_t refreshed = 0;
  for (const std::shared_ptr<TokenApp>& app : snapshot()) {
    auto current = read_entry(*app);
    if (!current) continue;  // store down: the next pass tries again
    if (*current && (*current)->remaining > app->refresh_at) continue;
    auto flown = Flight(options_, *listeners_, *app).run({app->refresh_at, false, false});
    note_flown(*app, flown);
    if (flown && *flown) ++refreshed;
  }
  return refreshed;
}

std::uint64_t TokenManager::on_fetch(FetchListener listener) {
  if (!listener) return 0;
  std::lock_guard lock(listeners_->mutex);
  const std::uint64_t id = ++listeners_->next_id;
  listeners_->listeners.emplace_back(id, std::move(listener));
  return id;
}

void TokenManager::remove_fetch_listener(std::uint64_t id) {
  std::lock_guard lock(listeners_->mutex);
  std::erase_if(listeners_->listeners, [id](const auto& entry) { return entry.first == id; });
}

void TokenManager::start_refresher(std::chrono::milliseconds interval) {
  std::lock_guard lock(refresher_mutex_);
  if (refresher_) return;
  refresher_ = std::make_unique<internal::TokenRefresher>();
  refresher_->thread = std::thread([this, interval, r = refresher_.get()] {
    std::unique_lock wait_lock(r->mutex);
    while (!r->stop) {
      wait_lock.unlock();
      refresh_due();
      wait_lock.lock();
      r->wake.wait_for(wait_lock, interval, [r] { return r->stop; });
    }
  });
}

void TokenManager::stop_refresher() {
  std::unique_ptr<internal::TokenRefresher> refresher;
  {
    std::lock_guard lock(refresher_mutex_);
    refresher = std::move(refresher_);
  }
  if (!refresher) return;
  {
    std::lock_guard lock(refresher->mutex);
    refresher->stop = true;
  }
  refresher->wake.notify_all();
  refresher->thread.join();
}

std::vector<TokenAppStats> TokenManager::stats() const {
  std::vector<TokenAppStats> out;
  for (const std::shared_ptr<TokenApp>& app : snapshot()) {
    TokenAppStats s;
    s.channel = app->channel;
    s.app_key = app->key;
    s.hits = app->counters->hits.load();
    s.fetches = app->counters->fetches.load();
    s.fetch_failures_retryable = app->counters->failures_retryable.load();
    s.fetch_failures_configuration = app->counters->failures_configuration.load();
    s.fetch_failures_quota = app->counters->failures_quota.load();
    s.waits = app->counters->waits.load();
    s.invalidations = app->counters->invalidations.load();
    s.refresh_margin_seconds = std::chrono::duration_cast<seconds>(app->margin).count();
    {
      std::lock_guard lock(app->mutex);
      s.last_fetch = app->last_fetch;
      s.last_error = app->last_error;
    }
    // What this process saw of the token, counted down on the clock; the
    // store only when that cannot be right any more: nothing seen (or seen
    // absent, or removed), or the token seen has expired since. On a store
    // error the figure is left out.
    const Clock::TimePoint now = options_.clock->now();
    auto seen = app->seen_expiry.load(std::memory_order_relaxed);
    if (seen == TokenApp::kExpiryUnknown ||
        (seen != TokenApp::kExpiryNever && seen <= now.time_since_epoch().count())) {
      (void)read_entry(*app);  // notes what it finds
      seen = app->seen_expiry.load(std::memory_order_relaxed);
    }
    if (seen != TokenApp::kExpiryUnknown && seen != TokenApp::kExpiryNever) {
      const Clock::TimePoint expiry{Clock::TimePoint::duration(seen)};
      s.seconds_until_expiry = std::chrono::duration_cast<seconds>(
                                   std::max(expiry - now, Clock::TimePoint::duration::zero()))
                                   .count();
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace aicache
