// Misbehaving HTTP clients for bench/serve_slow_clients.sh: holds N
// connections to a server, each sending a request one byte at a time, and
// optionally opens and abandons half-sent requests in a loop.
//
//   slow_clients --port=P [--slow=200] [--interval-ms=100] [--abandon-per-s=0]
//                [--seconds=30]
//
// A trickling connection the server closes (the request deadline) is opened
// again, so the server faces --slow of them for the whole run. Prints one
// JSON line at the end: connections opened, bytes trickled, connections the
// server cut off, requests abandoned.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

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

// True if the server closed (or answered) the connection.
bool server_done(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
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
  if (o.port <= 0) {
    std::fprintf(stderr, "slow_clients: --port is required\n");
    return 2;
  }

  constexpr std::string_view kHead = "GET /v1/kv/slow HTTP/1.1\r\nHost: bench\r\nX-Slow: ";
  std::uint64_t opened = 0, trickled = 0, cut_off = 0, abandoned = 0;
  auto open_slow = [&] {
    const int fd = open_connection(o.port);
    if (fd >= 0) {
      ++opened;
      (void)::send(fd, kHead.data(), kHead.size(), MSG_NOSIGNAL);
    }
    return fd;
  };
  std::vector<int> slow(static_cast<std::size_t>(o.slow), -1);
  for (int& fd : slow) fd = open_slow();

  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(o.seconds);
  const auto interval = std::chrono::milliseconds(o.interval_ms);
  double abandon_due = 0;
  while (std::chrono::steady_clock::now() < end) {
    const auto round_start = std::chrono::steady_clock::now();
    for (int& fd : slow) {
      if (fd >= 0 && server_done(fd)) {
        ::close(fd);
        ++cut_off;
        fd = -1;
      }
      if (fd < 0) fd = open_slow();
      if (fd >= 0 && ::send(fd, "a", 1, MSG_NOSIGNAL) == 1) ++trickled;
    }
    abandon_due += o.abandon_per_second * (o.interval_ms / 1000.0);
    for (; abandon_due >= 1; abandon_due -= 1) {
      const int fd = open_connection(o.port);
      if (fd < 0) continue;
      constexpr std::string_view kPartial =
          "PUT /v1/kv/left HTTP/1.1\r\nContent-Length: 4096\r\n\r\n{\"half\":";
      (void)::send(fd, kPartial.data(), kPartial.size(), MSG_NOSIGNAL);
      ::close(fd);
      ++abandoned;
    }
    std::this_thread::sleep_until(round_start + interval);
  }
  for (int fd : slow) {
    if (fd >= 0) ::close(fd);
  }
  fmt::print(R"({{"opened":{},"trickled_bytes":{},"cut_off":{},"abandoned":{}}})"
             "\n",
             opened, trickled, cut_off, abandoned);
  return 0;
}
