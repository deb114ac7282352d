// Single flight of token fetches across real processes: token_worker
// processes (tests/tokens/token_worker.cc) share one real redis-server and
// fetch from one local platform fake over HTTP, on the real clock.
//
// Each worker prints "ready" once its store and manager are up, then waits
// for one byte on stdin, so all processes are released together; each of its
// threads then calls get() once and prints "token=<t> ms=<elapsed>".
// Nothing here sleeps for a TTL except the lease TTL of the killed owner,
// which is the behaviour under test (1 s).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "aicache/assistant_cache.h"
#include "aicache/redis_store.h"
#include "aicache/token_manager.h"
#include "support/fake_platform.h"
#include "support/redis_server.h"
#include "support/timing.h"

namespace aicache {
namespace {

using namespace std::chrono_literals;
using testing::FakePlatform;
using testing::RedisServer;
using testing::scaled;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kKeyPrefix = "proc";
constexpr std::string_view kSecret = "s3cr3t-app-secret";

// One get() of one worker thread.
struct Call {
  std::string token;  // empty if it failed
  std::string error;
  long ms = -1;
};

struct Finished {
  int exit_code = -1;     // -1 if it did not exit normally
  std::string output;     // everything it printed on stdout
  std::vector<Call> calls;
};

// A token_worker process with its stdin and stdout on pipes; stderr is the
// test's. Killed and reaped on destruction if still running.
class WorkerProcess {
 public:
  explicit WorkerProcess(std::vector<std::string> args) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2 failed";
      return;
    }
    args.insert(args.begin(), AICACHE_TOKEN_WORKER_PATH);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(125);
      ::alarm(30);  // a hung worker dies; alarms survive execv
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    if (pid_ < 0) ADD_FAILURE() << "fork failed";
  }

  ~WorkerProcess() {
    if (pid_ > 0 && !reaped_) Kill();
    if (stdin_ >= 0) ::close(stdin_);
    if (stdout_ >= 0) ::close(stdout_);
  }

  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Waits for the worker's "ready" line.
  bool WaitReady(SteadyClock::time_point deadline) {
    while (output_.find("ready\n") == std::string::npos) {
      if (!ReadSome(deadline)) return false;
    }
    return true;
  }

  // The start signal: one byte on stdin.
  void Start() {
    const char go = 'g';
    EXPECT_EQ(::write(stdin_, &go, 1), 1);
    ::close(stdin_);
    stdin_ = -1;
  }

  // SIGKILL, and reaps it. True if it died of that signal (not earlier).
  bool Kill() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }

  // Reads everything up to end of file, then reaps the process.
  Finished Finish(SteadyClock::time_point deadline) {
    while (ReadSome(deadline)) {
    }
    Finished finished;
    if (!eof_) {
      ADD_FAILURE() << "worker " << pid_ << " did not finish in time; output so far:\n" << output_;
      Kill();
      finished.output = output_;
      return finished;
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    if (WIFEXITED(status)) finished.exit_code = WEXITSTATUS(status);
    finished.output = output_;
    std::string_view rest = output_;
    while (!rest.empty()) {
      const auto end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      const bool token = line.starts_with("token=");
      if (!token && !line.starts_with("error=")) continue;  // "ready"
      const auto ms = line.rfind(" ms=");
      if (ms == std::string_view::npos) continue;
      Call call;
      std::string value(line.substr(6, ms - 6));
      (token ? call.token : call.error) = std::move(value);
      call.ms = std::stol(std::string(line.substr(ms + 4)));
      finished.calls.push_back(std::move(call));
    }
    return finished;
  }

 private:
  // Reads what is available before the deadline; false at end of file or
  // when the deadline has passed.
  bool ReadSome(SteadyClock::time_point deadline) {
    if (eof_) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - SteadyClock::now());
    if (left <= 0ms) return false;
    pollfd fd{stdout_, POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
    if (ready < 0) return errno == EINTR;
    if (ready == 0) return false;
    char buffer[4096];
    const ssize_t n = ::read(stdout_, buffer, sizeof(buffer));
    if (n < 0) return errno == EINTR;
    if (n == 0) {
      eof_ = true;
      return false;
    }
    output_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  bool reaped_ = false;
  bool eof_ = false;
  std::string output_;
};

class TokenProcessesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto endpoint = parse_redis_url(redis_.url());
    ASSERT_TRUE(endpoint) << endpoint.error().to_string();
    auto store = make_redis_store({.endpoint = *endpoint});
    ASSERT_TRUE(store) << store.error().to_string();
    store_ = std::move(*store);
    auto cache = AssistantCache::create(store_, {.key_prefix = std::string(kKeyPrefix)});
    ASSERT_TRUE(cache) << cache.error().to_string();
    cache_ = std::move(*cache);
  }

  AppCredentials App(std::string app_id, std::string api) {
    AppCredentials app{.channel = Channel::kWeChat, .app_id = std::move(app_id),
                       .secret = std::string(kSecret), .api = std::move(api),
                       .base_url = fake_.base_url()};
    fake_.add_app(app);
    return app;
  }

  std::vector<std::string> WorkerArgs(const AppCredentials& app, int threads,
                                      std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--redis-url", redis_.url(),
                                  "--base-url", app.base_url,
                                  "--channel", "wechat",
                                  "--app", app.app_id,
                                  "--secret", app.secret,
                                  "--api", app.api,
                                  "--key-prefix", std::string(kKeyPrefix),
                                  "--threads", std::to_string(threads)};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Starts `processes` workers, waits until all are ready, releases them
  // together and collects every call. Expects each worker to exit 0.
  std::vector<Call> RunTogether(int processes, const std::vector<std::string>& args) {
    std::vector<std::unique_ptr<WorkerProcess>> workers;
    for (int i = 0; i < processes; ++i) workers.push_back(std::make_unique<WorkerProcess>(args));
    const auto ready_by = SteadyClock::now() + 10s;
    for (auto& worker : workers) {
      EXPECT_TRUE(worker->WaitReady(ready_by)) << "worker " << worker->pid() << " not ready";
    }
    for (auto& worker : workers) worker->Start();
    const auto done_by = SteadyClock::now() + 15s;
    std::vector<Call> calls;
    for (auto& worker : workers) {
      Finished finished = worker->Finish(done_by);
      EXPECT_EQ(finished.exit_code, 0) << finished.output;
      calls.insert(calls.end(), finished.calls.begin(), finished.calls.end());
    }
    return calls;
  }

  static std::set<std::string> Tokens(const std::vector<Call>& calls) {
    std::set<std::string> tokens;
    for (const Call& call : calls) tokens.insert(call.token);
    return tokens;
  }

  std::string LeaseKey(std::string_view app_id) {
    return *cache_->keys().make(fmt::format("ai_assistant:token_lease:wechat:{}", app_id));
  }

  RedisServer redis_;
  FakePlatform fake_;  // real clock
  std::shared_ptr<Store> store_;
  std::shared_ptr<AssistantCache> cache_;
};

TEST_F(TokenProcessesTest, ColdStartOfEightProcessesFetchesOnce) {
  const AppCredentials app = App("wx_cold", "plain");
  fake_.set_latency(200ms);

  const std::vector<Call> calls = RunTogether(8, WorkerArgs(app, 4));

  ASSERT_EQ(calls.size(), 32u);
  const std::set<std::string> tokens = Tokens(calls);
  ASSERT_EQ(tokens.size(), 1u) << fmt::format("{}", fmt::join(tokens, ", "));
  const std::string token = *tokens.begin();
  EXPECT_FALSE(token.empty());
  EXPECT_EQ(fake_.token_calls(), 1u);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, token), 0);
  EXPECT_EQ(cache_->get_access_token("wechat", "wx_cold"), token);
}

TEST_F(TokenProcessesTest, KilledLeaseOwnerIsReplacedOnceItsLeaseExpires) {
  constexpr auto kLeaseTtl = 1000ms;
  constexpr auto kFetch = 200ms;    // B's fetch
  constexpr auto kSlack = scaled(2000ms);  // support/timing.h
  const AppCredentials app = App("wx_kill", "plain");
  const std::vector<std::string> extra{"--lease-ttl-ms", std::to_string(kLeaseTtl.count()),
                                       "--wait-timeout-ms", "10000"};
  const std::string lease_key = LeaseKey(app.app_id);

  // Both processes are up before anything starts: A, and B (4 threads).
  WorkerProcess a(WorkerArgs(app, 1, extra));
  WorkerProcess b(WorkerArgs(app, 4, extra));
  ASSERT_TRUE(a.WaitReady(SteadyClock::now() + 10s));
  ASSERT_TRUE(b.WaitReady(SteadyClock::now() + 10s));

  // A takes the lease and starts a fetch that will not finish in time.
  fake_.set_latency(3s);
  a.Start();
  std::optional<std::string> lease;
  const auto taken_by = SteadyClock::now() + 5s;
  for (;;) {
    auto held = store_->get(lease_key);
    ASSERT_TRUE(held) << held.error().to_string();
    if (*held && fake_.token_calls() == 1) {
      lease = **held;
      break;
    }
    ASSERT_LT(SteadyClock::now(), taken_by) << "A never took the lease and called the platform";
    std::this_thread::sleep_for(5ms);
  }
  // The lease names its owner "{host}:{pid}:...".
  EXPECT_THAT(*lease, HasSubstr(fmt::format(":{}:", a.pid())));
  // The lease expires no earlier than this: Redis measured what is left
  // after the request was sent.
  const auto asked_ttl_at = SteadyClock::now();
  auto lease_ttl = store_->ttl(lease_key);
  ASSERT_TRUE(lease_ttl);
  ASSERT_EQ(lease_ttl->state, KeyTtl::State::kExpiring);
  const auto lease_expires = asked_ttl_at + lease_ttl->remaining;

  // B starts waiting on A's lease; A dies mid-fetch.
  fake_.set_latency(kFetch);
  const auto b_started = SteadyClock::now();
  b.Start();
  EXPECT_TRUE(a.Kill()) << "A finished before it was killed";
  // B's fetch reaches the platform only once A's lease has expired.
  const auto fetch_by = SteadyClock::now() + 10s;
  while (fake_.token_calls() < 2 && SteadyClock::now() < fetch_by) std::this_thread::sleep_for(1ms);
  const auto second_fetch_seen = SteadyClock::now();
  EXPECT_EQ(fake_.token_calls(), 2u);
  EXPECT_GE(second_fetch_seen, lease_expires - 20ms) << "B fetched while A's lease stood";

  Finished finished = b.Finish(SteadyClock::now() + 15s);
  EXPECT_EQ(finished.exit_code, 0) << finished.output;
  ASSERT_EQ(finished.calls.size(), 4u) << finished.output;
  const std::set<std::string> tokens = Tokens(finished.calls);
  ASSERT_EQ(tokens.size(), 1u) << finished.output;
  const std::string token = *tokens.begin();
  EXPECT_FALSE(token.empty()) << finished.output;
  // Every caller of B had its token within lease TTL + fetch time (+ slack
  // for process scheduling on a busy machine).
  for (const Call& call : finished.calls) {
    EXPECT_LE(call.ms, (kLeaseTtl + kFetch + kSlack).count()) << finished.output;
  }
  EXPECT_LE(SteadyClock::now() - b_started, kLeaseTtl + kFetch + kSlack);
  // A's abandoned fetch and B's.
  EXPECT_EQ(fake_.token_calls(), 2u);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, token), 0);
  EXPECT_EQ(cache_->get_access_token("wechat", "wx_kill"), token);
}

TEST_F(TokenProcessesTest, ThirtyTwoCallersWithARejectedTokenRefetchOnce) {
  const AppCredentials app = App("wx_rejected", "stable");
  // Every caller holds the token a manager on the same Redis fetched...
  auto manager = TokenManager::create(cache_);
  ASSERT_TRUE(manager) << manager.error().to_string();
  ASSERT_TRUE((*manager)->add_app(app));
  auto held = (*manager)->get("wechat", app.app_id);
  ASSERT_TRUE(held) << held.error().to_string();
  const std::string rejected = held->access_token;
  // ...and the platform stops accepting it (a force refresh elsewhere).
  ASSERT_TRUE(make_token_provider(app)->fetch(/*force_refresh=*/true));
  ASSERT_EQ(fake_.check_token(Channel::kWeChat, rejected), 40001);
  ASSERT_EQ(fake_.token_calls(), 2u);
  fake_.set_latency(200ms);

  const std::vector<Call> calls = RunTogether(8, WorkerArgs(app, 4, {"--invalidate", rejected}));

  ASSERT_EQ(calls.size(), 32u);
  const std::set<std::string> tokens = Tokens(calls);
  ASSERT_EQ(tokens.size(), 1u) << fmt::format("{}", fmt::join(tokens, ", "));
  const std::string token = *tokens.begin();
  EXPECT_NE(token, rejected);
  EXPECT_EQ(fake_.check_token(Channel::kWeChat, token), 0);
  EXPECT_EQ(fake_.token_calls(), 3u) << "exactly one refetch";
  EXPECT_EQ(cache_->get_access_token("wechat", "wx_rejected"), token);
}

}  // namespace
}  // namespace aicache
