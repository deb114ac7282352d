// Misbehaving HTTP clients for bench/serve_slow_clients.sh: holds N
// connections to a server, each sending a request one byte at a time, and
// optionally opens and abandons half-sent requests in a loop.
//
//   slow_clients --port=P [--slow=200] [--interval-ms=100] [--abandon-per-s=0]
//                [--seconds=30]
//
// A trickling connection the server closes (the request deadline) is opened
// again, so the server faces --slow of them for the whole run (--seconds,
// or until SIGTERM or SIGINT). Each sends
// one byte per interval; the connections' sends are spread evenly over the
// interval (a few thousand independent clients do not send in lockstep).
// Requests name the server by a loopback Host, so that a token-less server
// reads them as it would a legitimate client's (a foreign Host would be
// refused with 403 as soon as the head is complete). Raises its own soft
// limit on descriptors to the hard one. Prints one JSON line at the end:
// connections opened, connect failures, bytes trickled, connections the
// server cut off, requests abandoned.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using SteadyClock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_stop = 0;  // SIGTERM or SIGINT: finish and report
void on_stop(int) { g_stop = 1; }

struct Options {
  int port = 0;
  int slow = 200;
  int interval_ms = 100;
  int abandon_per_second = 0;
  int seconds = 30;
};

bool parse_int(std::string_view arg, std::string_view name, int& out) {
  if (!arg.starts_with(name)) return false;
  arg.remove_prefix(name.size());
  const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), out);
  if (ec != std::errc() || end != arg.data() + arg.size() || out < 0) {
    std::fprintf(stderr, "slow_clients: bad value in %s\n", std::string(name).c_str());
    std::exit(2);
  }
  return true;
}

// Descriptors for every connection plus a margin; the soft limit is often 1024.
void raise_descriptor_limit(int connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted = static_cast<rlim_t>(connections) + 64;
  if (limit.rlim_cur >= wanted) return;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
  (void)::setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < wanted) {
    std::fprintf(stderr, "slow_clients: open-file limit %llu is below the %d connections asked for\n",
                 static_cast<unsigned long long>(limit.rlim_cur), connections);
  }
}

int open_connection(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (!parse_int(arg, "--port=", o.port) && !parse_int(arg, "--slow=", o.slow) &&
        !parse_int(arg, "--interval-ms=", o.interval_ms) &&
        !parse_int(arg, "--abandon-per-s=", o.abandon_per_second) &&
        !parse_int(arg, "--seconds=", o.seconds)) {
      std::fprintf(stderr,
                   "usage: slow_clients --port=P [--slow=N] [--interval-ms=MS] "
                   "[--abandon-per-s=N] [--seconds=S]\n");
      return 2;
    }
  }
  if (o.port <= 0 || o.interval_ms <= 0) {
    std::fprintf(stderr, "slow_clients: --port and --interval-ms must be positive\n");
    return 2;
  }
  raise_descriptor_limit(o.slow);
  struct sigaction stop {};
  stop.sa_handler = on_stop;
  ::sigaction(SIGTERM, &stop, nullptr);
  ::sigaction(SIGINT, &stop, nullptr);

  constexpr std::string_view kHead = "GET /v1/kv/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
  std::uint64_t opened = 0, connect_failures = 0, trickled = 0, cut_off = 0, abandoned = 0;
  auto open_slow = [&] {
    const int fd = open_connection(o.port);
    if (fd < 0) {
      ++connect_failures;
      return -1;
    }
    ++opened;
    (void)::send(fd, kHead.data(), kHead.size(), MSG_NOSIGNAL);
    return fd;
  };
  std::vector<pollfd> slow(static_cast<std::size_t>(o.slow), pollfd{-1, POLLIN, 0});
  for (pollfd& p : slow) p.fd = open_slow();

  // Each interval is cut into ticks; a tick serves its share of the
  // connections, so the bytes arrive at a steady rate, not in bursts.
  const auto interval = std::chrono::milliseconds(o.interval_ms);
  const int ticks = std::max(1, std::min(o.interval_ms, 20));
  const auto tick = std::chrono::duration_cast<SteadyClock::duration>(interval) / ticks;
  const std::size_t n = slow.size();
  const auto end = SteadyClock::now() + std::chrono::seconds(o.seconds);
  double abandon_due = 0;
  auto next = SteadyClock::now();
  while (!g_stop && SteadyClock::now() < end) {
    // Which connections the server closed (or answered): one poll for all.
    for (pollfd& p : slow) p.revents = 0;
    if (::poll(slow.data(), static_cast<nfds_t>(n), 0) > 0) {
      for (pollfd& p : slow) {
        if (p.fd >= 0 && p.revents != 0) {
          ::close(p.fd);
          ++cut_off;
          p.fd = -1;
        }
      }
    }
    for (int t = 0; t < ticks; ++t) {
      const std::size_t from = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(ticks);
      const std::size_t to = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(ticks);
      for (std::size_t i = from; i < to; ++i) {
        int& fd = slow[i].fd;
        if (fd < 0) fd = open_slow();
        if (fd >= 0 && ::send(fd, "a", 1, MSG_NOSIGNAL) == 1) ++trickled;
      }
      next += tick;
      std::this_thread::sleep_until(next);
    }
    abandon_due += o.abandon_per_second * (o.interval_ms / 1000.0);
    for (; abandon_due >= 1; abandon_due -= 1) {
      const int fd = open_connection(o.port);
      if (fd < 0) {
        ++connect_failures;
        continue;
      }
      constexpr std::string_view kPartial =
          "PUT /v1/kv/left HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
          "Content-Length: 4096\r\n\r\n{\"half\":";
      (void)::send(fd, kPartial.data(), kPartial.size(), MSG_NOSIGNAL);
      ::close(fd);
      ++abandoned;
    }
    // A late round (a loaded machine) does not try to catch up in a burst.
    if (SteadyClock::now() > next) next = SteadyClock::now();
  }
  std::size_t still_open = 0;
  for (const pollfd& p : slow) {
    if (p.fd >= 0) {
      ++still_open;
      ::close(p.fd);
    }
  }
  fmt::print(R"({{"opened":{},"open_at_end":{},"connect_failures":{},"trickled_bytes":{},)"
             R"("cut_off":{},"abandoned":{}}})"
             "\n",
             opened, still_open, connect_failures, trickled, cut_off, abandoned);
  return 0;
}
