// FaultyStore: wraps a real Store and fails on command (leveldb's ErrorEnv
// pattern), for the paths a real outage cannot reach deterministically; and
// lets a test see a call arrive, or hold it in flight (on_call).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "aicache/store.h"

namespace aicache::testing {

class FaultyStore final : public Store {
 public:
  explicit FaultyStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}

  // While set, every operation fails with `code` without reaching the store.
  void fail_with(ErrorCode code) {
    code_.store(code);
    failing_.store(true);
  }
  void heal() { failing_.store(false); }
  int failures() const { return failures_.load(); }

  // `hook` runs at the start of every operation, on the caller's thread,
  // before any injected failure: a test can signal that a request reached
  // the store, and block it there (a request in flight) until it lets go.
  // An empty function removes the hook.
  void on_call(std::function<void()> hook) {
    std::lock_guard lock(hook_mutex_);
    hook_ = hook ? std::make_shared<const std::function<void()>>(std::move(hook)) : nullptr;
  }

  Result<std::optional<std::string>> get(std::string_view key) override {
    if (auto e = fault()) return *e;
    return inner_->get(key);
  }
  Result<std::optional<ValueWithTtl>> get_latest(std::string_view key) override {
    if (auto e = fault()) return *e;
    return inner_->get_latest(key);
  }
  Status set(std::string_view key, std::string_view value, Ttl ttl) override {
    if (auto e = fault()) return *e;
    return inner_->set(key, value, ttl);
  }
  Result<bool> add(std::string_view key, std::string_view value, Ttl ttl) override {
    if (auto e = fault()) return *e;
    return inner_->add(key, value, ttl);
  }
  Result<bool> remove(std::string_view key) override {
    if (auto e = fault()) return *e;
    return inner_->remove(key);
  }
  Result<bool> remove_if_equals(std::string_view key, std::string_view expected) override {
    if (auto e = fault()) return *e;
    return inner_->remove_if_equals(key, expected);
  }
  Result<bool> touch(std::string_view key, Ttl ttl) override {
    if (auto e = fault()) return *e;
    return inner_->touch(key, ttl);
  }
  Result<KeyTtl> ttl(std::string_view key) override {
    if (auto e = fault()) return *e;
    return inner_->ttl(key);
  }
  Result<std::vector<std::optional<std::string>>> get_many(
      std::span<const std::string> keys) override {
    if (auto e = fault()) return *e;
    return inner_->get_many(keys);
  }
  Status set_many(std::span<const std::pair<std::string, std::string>> entries,
                  Ttl ttl) override {
    if (auto e = fault()) return *e;
    return inner_->set_many(entries, ttl);
  }
  Result<std::uint64_t> remove_many(std::span<const std::string> keys) override {
    if (auto e = fault()) return *e;
    return inner_->remove_many(keys);
  }
  Result<std::int64_t> incr(std::string_view key, std::int64_t delta, Ttl ttl) override {
    if (auto e = fault()) return *e;
    return inner_->incr(key, delta, ttl);
  }
  Result<std::uint64_t> clear(std::string_view prefix) override {
    if (auto e = fault()) return *e;
    return inner_->clear(prefix);
  }
  Result<StoreStats> stats() override {
    if (auto e = fault()) return *e;
    return inner_->stats();
  }
  Result<ScanPage> scan(std::string_view prefix, std::string_view cursor,
                        std::size_t count) override {
    if (auto e = fault()) return *e;
    return inner_->scan(prefix, cursor, count);
  }
  // A faulty store stands for a shared one: values are re-validated.
  bool process_local() const noexcept override { return false; }

 private:
  std::optional<std::unexpected<Error>> fault() {
    std::shared_ptr<const std::function<void()>> hook;
    {
      std::lock_guard lock(hook_mutex_);
      hook = hook_;
    }
    if (hook) (*hook)();  // outside the lock: it may block
    if (!failing_.load()) return std::nullopt;
    ++failures_;
    return std::unexpected(Error{code_.load(), "injected failure"});
  }

  std::shared_ptr<Store> inner_;
  std::atomic<bool> failing_{false};
  std::atomic<ErrorCode> code_{ErrorCode::kUnavailable};
  std::atomic<int> failures_{0};
  std::mutex hook_mutex_;
  std::shared_ptr<const std::function<void()>> hook_;  // guarded by hook_mutex_
};

}  // namespace aicache::testing
