#include "support/raw_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <utility>

namespace aicache::testing {
namespace {

std::size_t content_length(std::string_view head) {
  const auto at = head.find("Content-Length: ");
  if (at == std::string_view::npos) return 0;
  std::size_t n = 0;
  std::from_chars(head.data() + at + 16, head.data() + head.size(), n);
  return n;
}

}  // namespace

RawConnection::RawConnection(std::uint16_t port, int receive_buffer)
    : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
  if (receive_buffer > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connected_ =
      fd_ >= 0 && ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

RawConnection::RawConnection(RawConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      connected_(other.connected_),
      received_(std::move(other.received_)) {}

RawConnection::~RawConnection() { close(); }

bool RawConnection::send(std::string_view bytes) {
  return fd_ >= 0 && ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                         static_cast<ssize_t>(bytes.size());
}

void RawConnection::set_send_timeout(std::chrono::milliseconds limit) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(limit.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((limit.count() % 1000) * 1000);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool RawConnection::closed_by_server() {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char buffer[4096];
  const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
  if (n > 0) received_.append(buffer, static_cast<std::size_t>(n));
  return n <= 0;
}

int RawConnection::read_response(std::string* body, std::chrono::milliseconds limit) {
  using SteadyClock = std::chrono::steady_clock;
  const auto until = SteadyClock::now() + limit;
  std::size_t head_end = std::string::npos;
  std::size_t length = 0;
  for (;;) {
    if (head_end == std::string::npos) {
      head_end = received_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        length = content_length(std::string_view(received_).substr(0, head_end));
      }
    }
    if (head_end != std::string::npos && received_.size() >= head_end + 4 + length) break;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    pollfd p{fd_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return 0;
    char buffer[16384];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) return 0;
    received_.append(buffer, static_cast<std::size_t>(n));
  }
  int status = 0;
  if (received_.starts_with("HTTP/1.1 ") && received_.size() >= 12) {
    std::from_chars(received_.data() + 9, received_.data() + 12, status);
  }
  if (body != nullptr) *body = received_.substr(head_end + 4, length);
  received_.erase(0, head_end + 4 + length);
  return status;
}

void RawConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace aicache::testing
