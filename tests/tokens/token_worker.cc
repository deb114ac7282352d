// token_worker: one "application process" for token_processes_test.
//
//   token_worker --redis-url URL --base-url URL --app ID --secret S
//                [--channel wechat] [--api plain] [--agent ID] [--threads N]
//                [--lease-ttl-ms MS] [--wait-timeout-ms MS] [--key-prefix P]
//                [--invalidate TOKEN]
//
// Opens a RedisStore, an AssistantCache and a TokenManager (real clock) for
// one app, prints "ready" and then waits for the start signal: one byte (or
// end of file) on stdin, so a test can release many processes at once. Then N
// threads start together and each calls get() once (after invalidate(TOKEN)
// with --invalidate) and the worker prints one line per thread:
//   token=<token> ms=<milliseconds the call took>
//   error=<message> ms=<milliseconds>
// The exit code is 0 if every thread got a token, 1 if any failed, 2 for a
// usage or setup error. A test tool: it prints tokens.
#include <unistd.h>

#include <barrier>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "aicache/assistant_cache.h"
#include "aicache/redis_store.h"
#include "aicache/token_manager.h"

namespace {

using namespace aicache;

struct Args {
  std::string redis_url;
  std::string base_url;
  std::string channel = "wechat";
  std::string app;
  std::string agent;
  std::string secret;
  std::string api = "plain";
  std::string key_prefix = "aicache-test";
  int threads = 1;
  long lease_ttl_ms = 30'000;
  long wait_timeout_ms = 45'000;
  std::optional<std::string> invalidate;
};

[[noreturn]] void usage(std::string_view problem) {
  fmt::print(stderr, "token_worker: {}\n", problem);
  std::exit(2);
}

long parse_number(std::string_view flag, std::string_view text) {
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0) {
    usage(fmt::format("{} wants a positive number, not \"{}\"", flag, text));
  }
  return value;
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage(fmt::format("{} needs a value", flag));
    const std::string_view value = argv[++i];
    if (flag == "--redis-url") args.redis_url = value;
    else if (flag == "--base-url") args.base_url = value;
    else if (flag == "--channel") args.channel = value;
    else if (flag == "--app") args.app = value;
    else if (flag == "--agent") args.agent = value;
    else if (flag == "--secret") args.secret = value;
    else if (flag == "--api") args.api = value;
    else if (flag == "--key-prefix") args.key_prefix = value;
    else if (flag == "--threads") args.threads = static_cast<int>(parse_number(flag, value));
    else if (flag == "--lease-ttl-ms") args.lease_ttl_ms = parse_number(flag, value);
    else if (flag == "--wait-timeout-ms") args.wait_timeout_ms = parse_number(flag, value);
    else if (flag == "--invalidate") args.invalidate = std::string(value);
    else usage(fmt::format("unknown option {}", flag));
  }
  if (args.redis_url.empty() || args.base_url.empty() || args.app.empty() || args.secret.empty()) {
    usage("--redis-url, --base-url, --app and --secret are required");
  }
  return args;
}

template <class T>
T or_die(Result<T> result, std::string_view what) {
  if (!result) usage(fmt::format("{}: {}", what, result.error().to_string()));
  return std::move(*result);
}

struct Outcome {
  std::string line;
  bool ok = false;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);

  const auto channel = parse_channel(args.channel);
  if (!channel) usage(fmt::format("unknown channel \"{}\"", args.channel));
  RedisStoreOptions store_options;
  store_options.endpoint = or_die(parse_redis_url(args.redis_url), "redis url");
  std::shared_ptr<Store> store = or_die(make_redis_store(store_options), "redis store");
  std::shared_ptr<AssistantCache> cache =
      or_die(AssistantCache::create(store, {.key_prefix = args.key_prefix}), "cache");
  TokenManagerOptions options;
  options.lease_ttl = std::chrono::milliseconds(args.lease_ttl_ms);
  options.wait_timeout = std::chrono::milliseconds(args.wait_timeout_ms);
  auto manager = or_die(TokenManager::create(cache, std::move(options)), "token manager");
  const AppCredentials app{.channel = *channel, .app_id = args.app, .agent_id = args.agent,
                           .secret = args.secret, .api = args.api, .base_url = args.base_url};
  const std::string app_key = TokenManager::app_key(app);
  if (auto added = manager->add_app(app); !added) {
    usage(fmt::format("add_app: {}", added.error().to_string()));
  }

  std::fputs("ready\n", stdout);
  std::fflush(stdout);
  char go = 0;
  if (::read(STDIN_FILENO, &go, 1) < 0) usage("reading the start signal failed");

  std::vector<Outcome> outcomes(static_cast<std::size_t>(args.threads));
  std::barrier start(args.threads);
  std::vector<std::thread> threads;
  for (int i = 0; i < args.threads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      const auto began = std::chrono::steady_clock::now();
      if (args.invalidate) (void)manager->invalidate(args.channel, app_key, *args.invalidate);
      auto token = manager->get(args.channel, app_key);
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - began).count();
      Outcome& out = outcomes[static_cast<std::size_t>(i)];
      out.ok = token.has_value();
      out.line = token ? fmt::format("token={} ms={}\n", token->access_token, ms)
                       : fmt::format("error={} ms={}\n", token.error().to_string(), ms);
    });
  }
  for (auto& thread : threads) thread.join();

  bool all_ok = true;
  for (const Outcome& out : outcomes) {
    std::fputs(out.line.c_str(), stdout);
    all_ok = all_ok && out.ok;
  }
  std::fflush(stdout);
  return all_ok ? 0 : 1;
}
