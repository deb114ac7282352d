// TokenManager, deterministically: another process stores the token and releases its
// lease between this process's read of the store and its add of the lease.
#include <gtest/gtest.h>

#include "aicache/memory_store.h"
#include "aicache/testing/manual_clock.h"
#include "aicache/token_manager.h"
#include "support/fake_platform.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;

// Forwards every call to a real store.
class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}
  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view k) override {
    return inner_->get_with_ttl(k);
  }
  Result<std::optional<ValueWithTtl>> get_latest(std::string_view k) override {
    return inner_->get_latest(k);
  }
  Result<std::optional<std::string>> get(std::string_view k) override { return inner_->get(k); }
  Status set(std::string_view k, std::string_view v, Ttl t) override { return inner_->set(k, v, t); }
  Result<bool> add(std::string_view k, std::string_view v, Ttl t) override { return inner_->add(k, v, t); }
  Result<bool> remove(std::string_view k) override { return inner_->remove(k); }
  Result<bool> remove_if_equals(std::string_view k, std::string_view e) override {
    return inner_->remove_if_equals(k, e);
  }
  Result<bool> touch(std::string_view k, Ttl t) override { return inner_->touch(k, t); }
  Result<KeyTtl> ttl(std::string_view k) override { return inner_->ttl(k); }
  Result<std::vector<std::optional<std::string>>> get_many(std::span<const std::string> k) override {
    return inner_->get_many(k);
  }
  Status set_many(std::span<const std::pair<std::string, std::string>> e, Ttl t) override {
    return inner_->set_many(e, t);
  }
  Result<std::uint64_t> remove_many(std::span<const std::string> k) override {
    return inner_->remove_many(k);
  }
  Result<std::int64_t> incr(std::string_view k, std::int64_t d, Ttl t) override {
    return inner_->incr(k, d, t);
  }
  Result<std::uint64_t> clear(std::string_view p) override { return inner_->clear(p); }
  Result<StoreStats> stats() override { return inner_->stats(); }

 protected:
  std::shared_ptr<Store> inner_;
};

// On the `fire_on`-th miss of `token_key`, lets "process A" finish (store
// its token, release its lease) before answering the stale miss.
class RaceStore final : public ForwardingStore {
 public:
  RaceStore(std::shared_ptr<Store> inner, std::string token_key, std::string lease_key, int fire_on)
      : ForwardingStore(std::move(inner)), token_key_(std::move(token_key)),
        lease_key_(std::move(lease_key)), fire_on_(fire_on) {}
  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key) override {
    auto r = inner_->get_with_ttl(key);
    if (key == token_key_ && r && !*r && ++misses_ == fire_on_) {
      (void)inner_->set(token_key_, "\"TOKEN_OF_A\"", Ttl(7200s));
      (void)inner_->remove(lease_key_);
    }
    return r;
  }

 private:
  std::string token_key_, lease_key_;
  int fire_on_;
  int misses_ = 0;
};

// Reads of `token_key` come from a copy that has not caught up (a replica
// behind its master, a near entry whose invalidation is in flight): a miss.
// Only get_latest() sees the stored token.
class LaggingStore final : public ForwardingStore {
 public:
  LaggingStore(std::shared_ptr<Store> inner, std::string token_key)
      : ForwardingStore(std::move(inner)), token_key_(std::move(token_key)) {}
  Result<std::optional<ValueWithTtl>> get_with_ttl(std::string_view key) override {
    if (key == token_key_) return std::optional<ValueWithTtl>();
    return inner_->get_with_ttl(key);
  }

 private:
  std::string token_key_;
};

// Process B: its token manager over `wrap(inner)`, the real store shared
// with process A, against a fake WeChat.
class LeaseRace : public ::testing::Test {
 protected:
  static constexpr std::string_view kTokenKey = "t:1:ai_assistant:access_token:wechat:wx1";
  static constexpr std::string_view kLeaseKey = "t:1:ai_assistant:token_lease:wechat:wx1";

  void SetUp() override { fake_.add_app(app_); }

  // B's get() of the app's token through `store`.
  Result<Token> get_through(std::shared_ptr<Store> store) {
    auto cache =
        std::shared_ptr<AssistantCache>(*AssistantCache::create(store, {.key_prefix = "t"}));
    TokenManagerOptions options;
    options.clock = clock_;
    options.sleep = [clock = clock_](std::chrono::nanoseconds d) { clock->advance(d); };
    options.owner_id = "process-b";
    auto manager = std::move(*TokenManager::create(cache, options));
    if (auto added = manager->add_app(app_); !added) return std::unexpected(added.error());
    return manager->get("wechat", "wx1");
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  testing::FakePlatform fake_{{.clock = clock_}};
  const AppCredentials app_{.channel = Channel::kWeChat, .app_id = "wx1", .secret = "s3cr3t",
                            .api = "plain", .base_url = fake_.base_url()};
  std::shared_ptr<Store> inner_ = make_memory_store({.clock = clock_});
};

TEST_F(LeaseRace, TokenStoredBetweenReadAndLeaseIsNotFetchedAgain) {
  // Process A holds the lease and is fetching.
  ASSERT_EQ(inner_->add(kLeaseKey, "process-a:1", 30s), true);
  // Miss 1: get()'s own read; miss 2: the flight's read, just before its add.
  auto token = get_through(std::make_shared<RaceStore>(inner_, std::string(kTokenKey),
                                                       std::string(kLeaseKey), 2));
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_EQ(token->access_token, "TOKEN_OF_A");
  EXPECT_EQ(fake_.token_calls(), 0u) << "B fetched although A had just stored a token";
  EXPECT_EQ(*inner_->get(kLeaseKey), std::nullopt) << "B's lease is released";
}

TEST_F(LeaseRace, ALaggingCopyDoesNotCostASecondFetch) {
  // Process A stored its token and released its lease; B's reads come from a
  // copy that does not have it yet. B takes the lease, and its look before
  // fetching (get_latest) finds A's token.
  ASSERT_TRUE(inner_->set(kTokenKey, "\"TOKEN_OF_A\"", Ttl(7200s)));
  auto token = get_through(std::make_shared<LaggingStore>(inner_, std::string(kTokenKey)));
  ASSERT_TRUE(token) << token.error().to_string();
  EXPECT_EQ(token->access_token, "TOKEN_OF_A");
  EXPECT_EQ(fake_.token_calls(), 0u) << "B fetched although A's token was stored";
  EXPECT_EQ(*inner_->get(kLeaseKey), std::nullopt) << "B's lease is released";
}

}  // namespace
}  // namespace aicache
