#include "server/warmup.h"

#include <fmt/format.h>

#include <algorithm>

#include "aicache/log.h"

namespace aicache::server {

Warmup::Warmup(std::shared_ptr<TokenManager> tokens, std::chrono::milliseconds timeout,
               std::shared_ptr<const Clock> clock, std::chrono::milliseconds retry_interval)
    : tokens_(std::move(tokens)),
      timeout_(timeout),
      clock_(clock ? std::move(clock) : Clock::real()),
      retry_interval_(retry_interval) {
  if (tokens_) {
    for (const TokenAppStats& app : tokens_->stats()) {
      apps_.push_back(WarmupApp{app.channel, app.app_key, WarmupApp::State::kPending, {}});
    }
  }
}

Warmup::~Warmup() { stop(); }

void Warmup::start() {
  std::lock_guard lock(mutex_);
  if (started_) return;
  started_ = true;
  deadline_ = clock_->now() + timeout_;
  if (apps_.empty() || timeout_.count() <= 0) {
    all_done_ = true;
    return;
  }
  log_message(LogLevel::kInfo, fmt::format("warm-up: fetching the tokens of {} app(s), at most "
                                           "{} s before answering ready",
                                           apps_.size(),
                                           std::chrono::duration_cast<std::chrono::seconds>(
                                               timeout_).count()));
  threads_.reserve(apps_.size());
  for (std::size_t i = 0; i < apps_.size(); ++i) threads_.emplace_back([this, i] { warm(i); });
}

void Warmup::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    threads.swap(threads_);
  }
  stopping_.notify_all();
  for (std::thread& t : threads) t.join();
}

void Warmup::warm(std::size_t index) {
  std::string channel, app_key;
  {
    std::lock_guard lock(mutex_);
    channel = apps_[index].channel;
    app_key = apps_[index].app_key;
  }
  for (;;) {
    auto token = tokens_->get(channel, app_key);
    std::unique_lock lock(mutex_);
    WarmupApp& app = apps_[index];
    if (token) {
      app.state = WarmupApp::State::kReady;
      app.last_error.clear();
    } else if (token.error().code == ErrorCode::kNotFound) {
      // Removed by a configuration reload (SIGHUP) while warming up: there
      // is nothing left to wait for.
      app.state = WarmupApp::State::kFailed;
      app.last_error = "removed from the configuration";
    } else if (token.error().code == ErrorCode::kConfig) {
      app.state = WarmupApp::State::kFailed;
      app.last_error = token.error().message;
      log_message(LogLevel::kError,
                  fmt::format("warm-up: {}/{} is misconfigured and is not waited for: {}",
                              channel, app_key, app.last_error));
    } else {
      app.last_error = token.error().message;
    }
    if (app.state != WarmupApp::State::kPending) {
      all_done_ = std::none_of(apps_.begin(), apps_.end(), [](const WarmupApp& a) {
        return a.state == WarmupApp::State::kPending;
      });
      if (all_done_) log_message(LogLevel::kInfo, "warm-up: done");
      return;
    }
    // Pending: again after a pause, until the deadline or stop().
    if (stopped_ || clock_->now() >= deadline_) {
      log_message(LogLevel::kWarning,
                  fmt::format("warm-up: no token for {}/{} before the deadline: {}", channel,
                              app_key, app.last_error));
      return;
    }
    stopping_.wait_for(lock, retry_interval_, [this] { return stopped_; });
    if (stopped_) return;
  }
}

WarmupStatus Warmup::status() const {
  std::lock_guard lock(mutex_);
  WarmupStatus out;
  out.apps = apps_;
  if (!started_) return out;
  out.ready = all_done_;
  if (!out.ready && clock_->now() >= deadline_) {
    out.ready = true;
    out.timed_out = true;
  }
  return out;
}

}  // namespace aicache::server
