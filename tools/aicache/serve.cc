#include "serve.h"

#include <fmt/format.h>

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <thread>

#include "aicache/log.h"
#include "aicache/server.h"
#include "commands.h"
#include "local_backend.h"
#include "reload.h"

namespace aicache::cli {
namespace {

// Each connection holds a descriptor, and the default soft limit (often
// 1024) would stop accepting before max_connections is reached. Raise it
// towards the hard limit, as far as needed (connections plus the store's
// pool, token clients and files), and say so when even that is short.
void raise_descriptor_limit(std::size_t max_connections) {
  const rlim_t wanted = static_cast<rlim_t>(max_connections) + 256;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= wanted) return;
  const rlim_t raised = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
  if (raised > limit.rlim_cur) {
    limit.rlim_cur = raised;
    (void)setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (raised < wanted) {
    log_message(LogLevel::kWarning,
                fmt::format("open-file limit {} is below AICACHE_MAX_CONNECTIONS {} + 256: "
                            "connections beyond it wait in the listen queue",
                            raised, max_connections));
  }
}

}  // namespace

int run_serve(Session& session, const Request& request) {
  const Config& config = session.config();
  const ServerOptions options = server_options(config, request);
  raise_descriptor_limit(options.max_connections);

  // SIGTERM and SIGINT are taken by sigwait() below; they are blocked before
  // any thread starts, so every thread inherits the mask and none dies of them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // SIGHUP reloads the configuration (reload.h), on this thread.
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto service = open_service(config);
  if (!service) return session.fail(service.error());
  const std::shared_ptr<TokenManager>& tokens = service->tokens;
  auto server = Server::create(service->cache, tokens, options);
  if (!server) return session.fail("cannot serve", server.error());
  if (auto started = (*server)->start(); !started) {
    return session.fail("cannot serve", started.error());
  }
  tokens->start_refresher();
  log_message(LogLevel::kInfo,
              fmt::format("store: {}, {} token app(s), API token {}",
                          config.redis_url ? "redis" : "memory", config.apps.size(),
                          options.api_token.empty() ? "off" : "required"));

  // The server stops on SIGTERM or SIGINT, or on its own when accepting
  // connections cannot go on; then the process exits non-zero so that a
  // supervisor restarts it.
  std::optional<Error> failure;  // written by the watcher, read after joining it
  std::atomic<bool> failed{false};
  std::thread watcher([&] {
    if (Status served = (*server)->wait(); !served) {
      failure = served.error();
      failed.store(true, std::memory_order_release);
      ::kill(::getpid(), SIGTERM);  // wakes the sigwait() below
    }
  });
  Reloader reloader(session, request, config, service->cache, tokens, *server);
  int signal = 0;
  while (sigwait(&stop_signals, &signal) == 0 && signal == SIGHUP) reloader.reload();
  if (!failed.load(std::memory_order_acquire)) {
    log_message(LogLevel::kInfo, fmt::format("signal {}: finishing in-flight requests", signal));
  }
  (*server)->stop();
  watcher.join();
  tokens->stop_refresher();
  if (failure) return session.fail("serving stopped", *failure);
  return kExitOk;
}

}  // namespace aicache::cli
