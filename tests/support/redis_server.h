// A real redis-server for tests, on a free loopback port in a TempDir.
//
//   RedisServer server;                 // started, answering PING
//   auto store = make_redis_store({.endpoint = *parse_redis_url(server.url())});
//
// The server persists nothing (--save "" --appendonly no) and is killed in
// the destructor; if the test process dies first, the kernel kills it too
// (PR_SET_PDEATHSIG; start servers from the thread that outlives them).
// Fault injection: stop()/kill() then restart() on the same port, and
// pause()/resume() (SIGSTOP/SIGCONT) for a server that accepts but never
// answers.
//
// Not thread-safe: drive one RedisServer from one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace aicache::testing {

// A TLS port beside the plain one (TestCertificates makes the files).
struct RedisServerTls {
  std::filesystem::path cert_file;  // the server's certificate and key
  std::filesystem::path key_file;
  // The CA that client certificates must chain to (tls-ca-cert-file).
  std::filesystem::path ca_file;
  // tls-auth-clients: require a client certificate.
  bool auth_clients = false;
};

struct RedisServerOptions {
  // requirepass for the default user; empty: none.
  std::string password;
  // An extra ACL user with every permission; empty: none.
  std::string acl_user;
  std::string acl_password;
  // Also listen on a unix socket (unix_socket_path()).
  bool unix_socket = false;
  // Also listen with TLS on tls_port() (the plain port stays, for PINGs
  // that check it is up, and for tests of a TLS client on a plain port).
  std::optional<RedisServerTls> tls;
  // More command-line options, e.g. {"--maxmemory", "1mb"}.
  std::vector<std::string> extra_args;
  // A configuration file's text: written to the server's directory and
  // passed before every other option (a sentinel rewrites its file, so it
  // must have one). Empty: none.
  std::string config_text;
  // Run as a sentinel (redis-server <config> --sentinel; config_text holds
  // its `sentinel monitor` lines).
  bool sentinel = false;
  // How long start() waits for PING to answer.
  std::chrono::milliseconds start_timeout{10000};
};

class RedisServer {
 public:
  // Starts the server; throws std::runtime_error if it cannot.
  explicit RedisServer(RedisServerOptions options = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  // The server's log so far (a sentinel's records each failover step).
  std::string read_log() const;
  // redis://[:password@]127.0.0.1:<port>/<db> (the default user's password).
  std::string url(std::int64_t db = 0) const;
  // With options.tls: the TLS port, and rediss://[:password@]<host>:<tls_port>/<db>.
  std::uint16_t tls_port() const noexcept { return tls_port_; }
  std::string tls_url(std::int64_t db = 0, std::string_view host = "127.0.0.1") const;
  // unix://<path>?db=<db>; only with options.unix_socket.
  std::string unix_url(std::int64_t db = 0) const;
  std::filesystem::path unix_socket_path() const;
  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }

  // SIGTERM, then waits for the process to exit.
  void stop();
  // SIGKILL, then waits for the process to exit.
  void kill();
  // Starts again on the same port (after stop() or kill(); stops first if
  // still running). Throws if the server does not come up.
  void restart();
  // SIGSTOP / SIGCONT: the server keeps its sockets but answers nothing.
  void pause();
  void resume();

 private:
  // One attempt to launch on port_; false if the server exited before
  // answering (e.g. the port was taken meanwhile).
  bool launch();
  void wait_exit();

  RedisServerOptions options_;
  TempDir dir_;
  std::uint16_t port_ = 0;
  std::uint16_t tls_port_ = 0;
  pid_t pid_ = -1;
  bool paused_ = false;
};

// A RedisServer started on first use and shared by the whole test process
// (gtest_discover_tests runs one test per process, and redis-server starts in
// a few milliseconds). Killed when the process exits.
RedisServer& shared_redis_server();

// A free loopback TCP port: bound to port 0, read back, released.
std::uint16_t pick_free_port();

}  // namespace aicache::testing
