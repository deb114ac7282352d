// One HTTP client connection over a plain TCP socket to 127.0.0.1, for tests
// that must control the bytes: partial requests, trickling, pipelining,
// hostile request lines, clients that stop reading.
//
//   RawConnection c(port);
//   c.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
//   std::string body;
//   EXPECT_EQ(c.read_response(&body), 200);
//
// Not thread-safe: one thread drives a connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace aicache::testing {

class RawConnection {
 public:
  // receive_buffer > 0 shrinks the socket's receive buffer (and so the TCP
  // window) before connecting.
  explicit RawConnection(std::uint16_t port, int receive_buffer = 0);
  RawConnection(RawConnection&& other) noexcept;
  RawConnection& operator=(RawConnection&&) = delete;
  ~RawConnection();

  bool connected() const { return connected_; }

  // Sends all of `bytes` in one call; false if the socket refused them (or
  // took them only in part before the send timeout).
  bool send(std::string_view bytes);

  // Makes send() give up once the socket has accepted nothing for `limit`
  // (a peer that stopped reading); by default send() blocks until it can.
  void set_send_timeout(std::chrono::milliseconds limit);

  // True once the server has closed its end (EOF or reset), without waiting.
  // Bytes that arrived meanwhile are kept for read_response().
  bool closed_by_server();

  // Reads one response (head and Content-Length body) within `limit`.
  // Returns the status, 0 if none came.
  int read_response(std::string* body = nullptr,
                    std::chrono::milliseconds limit = std::chrono::milliseconds(30'000));

  void close();

 private:
  int fd_;
  bool connected_ = false;
  std::string received_;
};

}  // namespace aicache::testing
