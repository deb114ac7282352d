// TokenManager: access tokens with one upstream fetch per refresh across
// every process that shares a store.
//
// The platforms' tokens live about 2 hours and their token APIs are rate
// limited; WeChat's plain API even revokes the previous token on every fetch.
// So every process asks the shared store first, and when a token must be
// fetched, exactly one caller in the whole deployment fetches it:
//
//  - within a process, the first caller of an app leads and the other threads
//    wait for its result;
//  - across processes, the leader must win a lease in the store (add-if-absent
//    of "ai_assistant:token_lease:{channel}:{app}" with a short TTL, released
//    by compare-and-delete). Losers poll the store for the new token until a
//    deadline; a crashed leader's lease simply expires and another takes over.
//
// The stored entry is the token as a JSON string under the AssistantCache key
// "ai_assistant:access_token:{channel}:{app}", with the store TTL equal to the
// remaining validity the platform reported, so a Django app reading the same
// key sees a plain token. A token is refreshed once less than the refresh
// margin remains; meanwhile, and whenever the platform fails, the still-valid
// token keeps being served. The background refresher refreshes registered apps
// `refresh_lead` before the margin, so in steady state no request waits.
//
// Failures are sorted as in token_provider.h: retryable ones are retried with
// exponential backoff and jitter, bounded by attempts and by the lease; a
// configuration error (bad secret, IP not whitelisted) is reported with the
// platform's code and message and not retried for `config_error_pause`; a
// quota error stops fetching for that app for `quota_pause`. After a failed
// refresh the lease is kept as a cooldown, so no process fetches again before
// the backoff ends: upstream calls per app stay bounded during an outage.
//
// Refreshes asked for from outside (refresh(): the service's POST
// .../refresh, `aicache token --force-refresh`) are limited per app, because
// each one is an upstream call the platform counts, and a forced one also
// spends one of WeChat's 20 forced refreshes a day and revokes the live
// token. Within `min_refresh_interval` of the last one, and beyond
// `forced_refreshes_per_day` forced ones, refresh() answers kRateLimited with
// Error::retry_after and makes no upstream call. What the manager does on its
// own is not limited: get()'s refresh within the margin, the background
// refresher, and the recovery from a rejected token (invalidate() then
// get()). Those are bounded already (one flight per app, a cooldown after a
// failure), and limiting them would only serve expired tokens.
//
// The limits hold across every process that shares the store, as the lease
// does: the platform's quota is per app, not per process, so N `serve`
// instances behind a load balancer must not get N times the budget. They live
// in the store beside the token:
//   ai_assistant:token_refreshed:{channel}:{app}  add-if-absent with a TTL of
//       min_refresh_interval: whoever adds it may refresh; the store's expiry
//       is the one clock every process shares, and the add is atomic, so two
//       processes cannot both pass.
//   ai_assistant:token_forced:{channel}:{app}     forced refreshes counted
//       with incr, created to expire at the platforms' midnight (China
//       Standard Time, UTC+8, when their daily quotas reset; computed from
//       `clock`'s wall time).
// A refused forced refresh does not use up the interval. A refresh that was
// admitted counts even if the platform then fails: the limit is on asking.
// On a process-local (memory) store the limits are per process.
//
// The app key of a WeCom app is "{corp_id}.{agent_id}": each application of a
// corp has its own token.
//
// Thread safety: safe to share between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/clock.h"
#include "aicache/lookup.h"
#include "aicache/status.h"
#include "aicache/token_provider.h"

namespace aicache {

namespace internal {
struct FetchListeners;
struct TokenApp;
struct TokenRefresher;
}  // namespace internal

struct TokenManagerOptions {
  // Refresh once less than this remains. Default: 300 s (the Django system's).
  std::chrono::seconds refresh_margin{300};
  // The background refresher starts this much earlier than the margin.
  std::chrono::seconds refresh_lead{60};
  // How long a leader holds the cross-process lease; longer than one fetch.
  // Retries stop early rather than outlive the lease. Default: 30 s.
  std::chrono::milliseconds lease_ttl{30'000};
  // How long a caller waits for another thread's or process's fetch before
  // kTimeout. Default: 45 s (a lease plus a fetch).
  std::chrono::milliseconds wait_timeout{45'000};
  // How often a caller waiting on another process looks at the store.
  std::chrono::milliseconds poll_interval{25};
  // Attempts per refresh for retryable failures, and the backoff between
  // them (doubling, with up to 50 % jitter, capped at backoff_max).
  int max_attempts = 3;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{60'000};
  // After a refresh failed for good, no process fetches this app again for
  // the backoff (doubling per consecutive failure, capped at backoff_max).
  // After a configuration error: config_error_pause; after a quota error:
  // quota_pause.
  std::chrono::seconds config_error_pause{60};
  std::chrono::seconds quota_pause{3600};
  // Limits on refresh() (see above). 0 s: no interval; at most 24 h.
  // Default: 60 s.
  std::chrono::seconds min_refresh_interval{60};
  // Forced refreshes (platform_force) per app and day; 0 refuses them all.
  // Default: 10, half of WeChat's 20: a fixed-window count can let twice the
  // cap through in the 24 h around a reset, and the rest stays for an
  // operator's emergency through other means.
  int forced_refreshes_per_day = 10;
  // HTTP settings for providers the manager makes from AppCredentials.
  HttpOptions http;
  // Time, and how to wait; tests pass a ManualClock and a sleep that advances
  // it. Defaults: the real clock and std::this_thread::sleep_for.
  std::shared_ptr<const Clock> clock = Clock::real();
  std::function<void(std::chrono::nanoseconds)> sleep;
  // Names this process in leases. Default: "{hostname}:{pid}:{random}".
  std::string owner_id;
};

struct Token {
  std::string access_token;
  std::chrono::seconds expires_in{0};  // remaining validity, rounded down
};

// One upstream call, as TokenManager::on_fetch reports it. Never holds the
// token or the secret. The views live as long as the call to the listener.
struct TokenFetchEvent {
  std::string_view channel;
  std::string_view app_key;
  std::chrono::nanoseconds duration{0};  // of this one call to the platform
  std::optional<FetchFailure> failure;   // nullopt: a token came back
};

// Figures per app. Never holds the token or the secret.
struct TokenAppStats {
  std::string channel;
  std::string app_key;
  std::uint64_t hits = 0;              // served from the store
  std::uint64_t fetches = 0;           // upstream calls made by this process
  std::uint64_t fetch_failures_retryable = 0;
  std::uint64_t fetch_failures_configuration = 0;
  std::uint64_t fetch_failures_quota = 0;
  std::uint64_t waits = 0;             // callers that waited for another's fetch
  std::uint64_t invalidations = 0;     // invalidate() calls that removed the entry
  std::optional<Clock::WallTimePoint> last_fetch;  // last successful fetch here
  // Of the stored token as this process last saw it (see stats()); nullopt
  // when there is none, it was stored without a TTL, or the store failed.
  std::optional<std::int64_t> seconds_until_expiry;
  std::int64_t refresh_margin_seconds = 0;  // requests refresh below this much validity
  std::string last_error;              // of the last failed refresh, if any
};

class TokenManager {
 public:
  // The manager reads and writes tokens through `cache` (its store and key
  // namespace, AssistantCache::token_slot). Refuses nonsensical options
  // (kInvalidArgument). Shared: the service and the refresher hold it.
  static Result<std::shared_ptr<TokenManager>> create(std::shared_ptr<AssistantCache> cache,
                                                      TokenManagerOptions options = {});
  ~TokenManager();  // stops the background refresher
  TokenManager(const TokenManager&) = delete;
  TokenManager& operator=(const TokenManager&) = delete;

  // Registers an app; its provider is made from the credentials. kConfig for
  // invalid credentials, kInvalidArgument if the app is already registered.
  Status add_app(AppCredentials app);
  // Registers an app with a provider of the caller's (for custom platforms).
  Status add_app(std::unique_ptr<TokenProvider> provider);

  // Makes the registered apps exactly `apps` (a configuration reload,
  // SIGHUP): an app not registered yet is added (the background refresher,
  // if running, fetches its token on its next pass); a registered app not in
  // `apps` is removed (get() and the others answer kNotFound for it from now
  // on, and the refresher no longer refreshes it); an app whose credentials
  // changed (secret, API flavour, base URL) gets a new provider, so the next
  // fetch uses them, keeps its counters and loses a cooldown left by the old
  // credentials. Its stored token stays and is served until it is due, as
  // are the tokens in the store of removed apps (other processes may serve
  // them still). Apps that did not change are left alone.
  //
  // All or nothing: every app is checked first (validate(AppCredentials),
  // no two with one channel and app key); on an error (kConfig naming the
  // app, never its secret) nothing changes. Atomic with respect to every
  // other call: a call for an app that is being removed either completes
  // with it (a request in flight finishes on the app it found) or answers
  // kNotFound. Apps added with a provider of the caller's are removed unless
  // their credentials are in `apps` (they then get a provider made from them).
  // Calls are meant to come one at a time (one reloading thread): if the
  // apps change meanwhile (another reconfigure(), add_app()), this one
  // changes nothing and answers kFailedPrecondition.
  struct AppChanges {
    std::vector<std::string> added, removed, changed;  // "channel/app_key", never a secret
  };
  Result<AppChanges> reconfigure(std::vector<AppCredentials> apps);

  // The app key of `app` as used in get(): the app id, or for WeCom
  // "{corp_id}.{agent_id}".
  static std::string app_key(const AppCredentials& app);

  // A valid token: from the store, or fetched (once, for everyone). kNotFound
  // for an app that was never added; kUpstream / kConfig with the platform's
  // code and message when no valid token exists and the fetch failed;
  // kTimeout when another process's fetch did not finish in time.
  Result<Token> get(std::string_view channel, std::string_view app_key);

  // The stored token if more than the refresh margin of its validity
  // remains, else nullopt. Never fetches and never waits for another's
  // fetch: one store read. For callers that must not block (the service's
  // I/O threads answer from it and hand the rest to get() on a worker).
  // kNotFound for an app that was never added.
  Lookup<Token> get_if_fresh(std::string_view channel, std::string_view app_key);

  // Fetches a new token now (single flight as above), even if the stored one
  // is valid. `platform_force` also asks WeChat's stable API to revoke the
  // current token (limited by the platform to 20 a day). For requests from
  // outside: limited by min_refresh_interval and forced_refreshes_per_day
  // (kRateLimited with Error::retry_after, no upstream call). To recover
  // from a rejected token use invalidate() and get(), which are not limited.
  Result<Token> refresh(std::string_view channel, std::string_view app_key,
                        bool platform_force = false);

  // After a platform call failed with an invalid-token error: removes the
  // stored token only if it is still `bad_token`, so a token another process
  // just fetched survives. True if it was removed. The next get() fetches.
  Result<bool> invalidate(std::string_view channel, std::string_view app_key,
                          std::string_view bad_token);

  // One pass of the background refresher: refreshes every registered app
  // whose token is missing or has less than margin + lead left (and is not
  // cooling down after a failure). Returns how many apps were refreshed.
  std::size_t refresh_due();

  // Runs refresh_due() every `interval` on a background thread until
  // stop_refresher() or destruction.
  void start_refresher(std::chrono::milliseconds interval = std::chrono::seconds(1));
  void stop_refresher();

  // Figures per app, from what this process already knows, so that it can
  // answer every scrape of /metrics without a store round trip per app.
  // seconds_until_expiry is the expiry of the stored token as this process
  // last read or wrote it (get(), get_if_fresh(), refresh() and each pass
  // of the refresher read it), counted down on the manager's clock, to
  // within a second. The store is read (one read per such app) only when
  // that cannot be right: this process has not seen the token yet, saw it
  // absent or removed it, or the token it saw has expired since. So a
  // token another process fetched or invalidated shows here once this
  // process reads the store again: within a refresher interval while the
  // refresher runs.
  std::vector<TokenAppStats> stats() const;

  // Calls `listener` after every upstream call this process makes — for a
  // request, refresh() or the refresher, retries included — on the thread
  // that made it, with the app, the outcome and how long the call took. So a
  // caller learns of fetches as they happen, without polling stats(). A
  // listener must be quick and must not call back into the manager
  // (listeners are called one at a time, under a lock). Returns an id for
  // remove_fetch_listener(); an empty listener is ignored (id 0).
  using FetchListener = std::function<void(const TokenFetchEvent&)>;
  std::uint64_t on_fetch(FetchListener listener);
  // Once this returns, the listener is not running and is never called
  // again, so whatever it refers to may go. Unknown ids are ignored.
  void remove_fetch_listener(std::uint64_t id);

 private:
  TokenManager(std::shared_ptr<AssistantCache> cache, TokenManagerOptions options);

  std::shared_ptr<internal::TokenApp> find(std::string_view channel,
                                           std::string_view app_key) const;
  Result<std::shared_ptr<internal::TokenApp>> registered(std::string_view channel,
                                                         std::string_view app_key) const;
  std::vector<std::shared_ptr<internal::TokenApp>> snapshot() const;
  Result<std::shared_ptr<internal::TokenApp>> make_app(
      std::unique_ptr<TokenProvider> provider) const;
  Status add(std::unique_ptr<TokenProvider> provider);

  std::shared_ptr<AssistantCache> cache_;
  TokenManagerOptions options_;
  std::unique_ptr<internal::FetchListeners> listeners_;
  mutable std::mutex apps_mutex_;
  // Guarded by apps_mutex_. Shared: a call holds the app it found while it
  // works on it, so reconfigure() can drop an app that is in use.
  std::vector<std::shared_ptr<internal::TokenApp>> apps_;
  std::mutex refresher_mutex_;
  std::unique_ptr<internal::TokenRefresher> refresher_;  // guarded by refresher_mutex_
};

}  // namespace aicache
