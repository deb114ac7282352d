#include "support/redis_server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace aicache::testing {
namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// True when a PING on 127.0.0.1:port gets any answer (+PONG, or -NOAUTH for
// a server with a password): the server is up and serving commands.
bool answers_ping(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr = loopback(port);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    constexpr char kPing[] = "PING\r\n";
    if (::send(fd, kPing, sizeof kPing - 1, MSG_NOSIGNAL) ==
        static_cast<ssize_t>(sizeof kPing - 1)) {
      char buf[64];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      ok = n > 0 && (buf[0] == '+' || buf[0] == '-');
      // "-LOADING" would not be ready; an empty db loads instantly anyway.
      if (ok && n >= 8 && std::string_view(buf, 8) == "-LOADING") ok = false;
    }
  }
  ::close(fd);
  return ok;
}

std::string server_binary() {
  if (const char* env = std::getenv("AICACHE_REDIS_SERVER"); env != nullptr && *env != '\0') {
    return env;
  }
  return "redis-server";
}

}  // namespace

std::uint16_t pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr = loopback(0);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

RedisServer::RedisServer(RedisServerOptions options) : options_(std::move(options)) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    port_ = pick_free_port();
    if (options_.tls) {
      do {
        tls_port_ = pick_free_port();
      } while (tls_port_ == port_);
    }
    if (launch()) return;
  }
  throw std::runtime_error("redis-server did not start; its log:\n" + read_log());
}

RedisServer::~RedisServer() {
  if (pid_ > 0) kill();
}

std::string RedisServer::url(std::int64_t db) const {
  if (options_.password.empty()) return fmt::format("redis://127.0.0.1:{}/{}", port_, db);
  return fmt::format("redis://:{}@127.0.0.1:{}/{}", options_.password, port_, db);
}

std::string RedisServer::tls_url(std::int64_t db, std::string_view host) const {
  const std::string info = options_.password.empty() ? "" : ":" + options_.password + "@";
  return fmt::format("rediss://{}{}:{}/{}", info, host, tls_port_, db);
}

std::string RedisServer::unix_url(std::int64_t db) const {
  return fmt::format("unix://{}?db={}", unix_socket_path().string(), db);
}

std::filesystem::path RedisServer::unix_socket_path() const { return dir_.path() / "redis.sock"; }

std::string RedisServer::read_log() const {
  std::ifstream in(dir_.path() / "redis.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool RedisServer::launch() {
  std::vector<std::string> args = {server_binary()};
  if (!options_.config_text.empty()) {
    // Written once: a sentinel rewrites it with what it learnt (replicas,
    // other sentinels, the current epoch), which a restart must keep.
    const auto conf = dir_.path() / "redis.conf";
    if (!std::filesystem::exists(conf)) dir_.write("redis.conf", options_.config_text);
    args.push_back(conf.string());
  }
  if (options_.sentinel) args.emplace_back("--sentinel");
  args.insert(args.end(), {"--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--daemonize", "no", "--dir", dir_.path().string(),
                           "--logfile", (dir_.path() / "redis.log").string(), "--databases", "16"});
  if (!options_.password.empty()) {
    args.insert(args.end(), {"--requirepass", options_.password});
  }
  if (!options_.acl_user.empty()) {
    args.insert(args.end(), {"--user", options_.acl_user, "on", ">" + options_.acl_password, "~*",
                             "&*", "+@all"});
  }
  if (options_.unix_socket) {
    args.insert(args.end(),
                {"--unixsocket", unix_socket_path().string(), "--unixsocketperm", "700"});
  }
  if (options_.tls) {
    args.insert(args.end(), {"--tls-port", std::to_string(tls_port_), "--tls-cert-file",
                             options_.tls->cert_file.string(), "--tls-key-file",
                             options_.tls->key_file.string(), "--tls-ca-cert-file",
                             options_.tls->ca_file.string(), "--tls-auth-clients",
                             options_.tls->auth_clients ? "yes" : "no"});
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Readiness is read from the log written after this point only (restart()
  // appends to the same log).
  const std::size_t log_offset = read_log().size();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork() failed");
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  paused_ = false;

  const auto deadline = Clock::now() + options_.start_timeout;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // exited: port taken, bad option, no binary
      return false;
    }
    // Our own log says ready, and the port answers: a server of another
    // test that won a race for the same port never writes to our log.
    // (A sentinel does not say "Ready": it names itself once listening.)
    const char* ready = options_.sentinel ? "Sentinel ID is" : "Ready to accept connections";
    if (read_log().find(ready, log_offset) != std::string::npos &&
        answers_ping(port_)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill();
  return false;
}

void RedisServer::wait_exit() {
  if (pid_ <= 0) return;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  paused_ = false;
}

void RedisServer::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (paused_) ::kill(pid_, SIGCONT);
  wait_exit();
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_exit();
}

void RedisServer::restart() {
  stop();
  // The same port: redis-server binds with SO_REUSEADDR, so TIME_WAIT
  // connections of the old process do not block it. A few tries cover a
  // slow kernel.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (launch()) return;
  }
  throw std::runtime_error("redis-server did not restart; its log:\n" + read_log());
}

void RedisServer::pause() {
  if (pid_ > 0 && !paused_) {
    ::kill(pid_, SIGSTOP);
    paused_ = true;
  }
}

void RedisServer::resume() {
  if (pid_ > 0 && paused_) {
    ::kill(pid_, SIGCONT);
    paused_ = false;
  }
}

RedisServer& shared_redis_server() {
  static RedisServer server;
  return server;
}

}  // namespace aicache::testing
