// HttpTransport on Boost.Beast 1.74 and Asio (see http_transport.h).
//
// Beast parses; the framing policy is ours. Beast 1.74 refuses some
// framing conflicts itself but not all (unequal duplicate Content-Length
// only from Boost 1.81, Content-Length with a non-chunked Transfer-Encoding
// only from 1.92, obsolete line folding never), so the parser is driven by
// hand: bytes are read into a flat buffer and fed to it, the head first
// (non-eager parsing stops there), the head's raw bytes and fields are
// checked, and only then is the body parsed, counting its wire bytes.
#include "server/http_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <array>
#include <condition_variable>
#include <deque>
#include <future>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "aicache/log.h"
#include "core/cpus.h"

namespace aicache::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using Parser = http::request_parser<http::string_body>;
// A connection's socket and timer name their loop's executor type, not the
// type-erased any_io_executor of tcp::socket or beast::tcp_stream: every
// asynchronous operation copies its executor (into the op and its work
// guard), and with the erased type each copy is an indirect call. At
// 10,000 trickling connections that was ~4 % of the server's CPU.
using Executor = net::io_context::executor_type;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Timer = net::basic_waitable_timer<SteadyClock, net::wait_traits<SteadyClock>, Executor>;

// Reads are this large; a request head must fit max_head_bytes anyway.
constexpr std::size_t kReadChunk = 8 * 1024;
// After refusing a request whose body was not read, the rest is drained
// for a while before the socket closes, so the client reads the answer
// instead of a reset (closing with unread data sends RST). Bounded both
// ways.
constexpr std::size_t kLingerBytes = 256 * 1024;
constexpr auto kLingerTime = std::chrono::seconds(1);
// Trickling clients. A request still incomplete this long after its first
// byte, whose last read brought fewer than kTrickleRead bytes, is parked:
// its socket's SO_RCVLOWAT is raised to kTrickleRead, so the kernel wakes
// the loop only once that much has arrived, and its I/O thread reads what
// came every kTrickleTick. Reading each byte as it came cost a wake-up, a
// recv (and the ACK it sends), a completion and a parse: at 10,000
// connections sending a byte every 100 ms each, over half of the two cores,
// taken from the clients that behave. Legitimate clients send a request
// within milliseconds, or in large reads (a big body on a slow link), and
// are never parked. Nothing reads a parked socket between its ticks (the
// low-water mark spares the loop the epoll wake-ups meanwhile); a tick that
// finds kTrickleRead bytes or more puts it back on ordinary reads. Deadlines
// are unchanged (they run on the connection's timer); a parked client's
// bytes reach the parser up to kTrickleTick late. Each parked connection is read kTrickleTick after it
// was parked, not all of them at once: reading 5,000 together stalled the
// thread for ~20 ms every tick, and the good clients' p99 with it. The
// thread wakes at most every kTickGranularity and reads at most
// kResumeBatch before letting other handlers run.
constexpr auto kTrickleAfter = std::chrono::seconds(1);
constexpr std::size_t kTrickleRead = 512;
constexpr auto kTrickleTick = std::chrono::milliseconds(250);
constexpr auto kTickGranularity = std::chrono::milliseconds(5);
constexpr std::size_t kResumeBatch = 32;

// Beast 1.74 speaks boost::string_view.
std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool safe_field_text(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// Accept errors after which accepting again can work.
bool transient_accept_error(const boost::system::error_code& ec) {
  switch (ec.value()) {
    case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:                // resources: back off
    case ECONNABORTED: case EINTR: case EAGAIN: case EPROTO: case EPERM:  // this connection only
    case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN: case ENONET:
    case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
      return ec.category() == boost::system::system_category();
    default:
      return false;
  }
}

bool resource_accept_error(const boost::system::error_code& ec) {
  const int v = ec.value();
  return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM;
}

class Transport;
class Session;

// One I/O thread: its event loop and the connections that live on it.
struct IoThread {
  net::io_context context{1};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<net::steady_timer> reactor_ready;  // see Transport::start()
  std::thread thread;
  std::mutex sessions_mutex;
  std::list<std::weak_ptr<Session>> sessions;  // guarded by sessions_mutex
  // Parked trickling connections (see kTrickleAfter) and when each is due
  // to be read, in that order. This thread only.
  std::deque<std::pair<SteadyClock::time_point, std::shared_ptr<Session>>> parked;
  std::optional<Timer> trickle_tick;
  bool tick_pending = false;  // a wait on trickle_tick, or a posted resume_due()
};

void park(IoThread& io, std::shared_ptr<Session> session);

class Transport final : public HttpTransport {
 public:
  Transport(TransportOptions options, RequestHandler& handler)
      : options_(std::move(options)), handler_(handler) {
    set_limits({options_.max_body_bytes, options_.request_timeout});
  }
  ~Transport() override { stop(); }

  Status start() override;
  std::uint16_t port() const override { return port_.load(); }
  void stop() override;
  Status wait() override;
  const TransportStats& stats() const override { return stats_; }
  std::size_t io_threads() const override { return threads_.size(); }

  void set_limits(ReloadableLimits limits) override {
    max_body_bytes_.store(limits.max_body_bytes, std::memory_order_relaxed);
    request_timeout_ms_.store(limits.request_timeout.count(), std::memory_order_relaxed);
  }
  ReloadableLimits limits() const {
    return {max_body_bytes_.load(std::memory_order_relaxed),
            std::chrono::milliseconds(request_timeout_ms_.load(std::memory_order_relaxed))};
  }

  const TransportOptions& options() const { return options_; }
  RequestHandler& handler() { return handler_; }
  TransportStats& mutable_stats() { return stats_; }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  void session_closed();

 private:
  void accept();
  void on_accept(const boost::system::error_code& ec, Socket socket, IoThread& home);
  void refuse_over_capacity(Socket& socket);
  void fail(std::string message);

  const TransportOptions options_;
  // options_.max_body_bytes and request_timeout as set_limits() left them.
  std::atomic<std::size_t> max_body_bytes_{0};
  std::atomic<std::int64_t> request_timeout_ms_{0};
  RequestHandler& handler_;
  TransportStats stats_;
  std::vector<std::unique_ptr<IoThread>> threads_;
  std::optional<tcp::acceptor> acceptor_;  // lives on threads_[0]
  std::optional<net::steady_timer> backoff_;
  std::chrono::milliseconds backoff_delay_{0};
  std::size_t next_thread_ = 0;  // accept handler only
  std::string over_capacity_answer_;
  std::atomic<std::uint16_t> port_{0};
  std::atomic<bool> stopping_{false};

  std::mutex state_mutex_;
  std::condition_variable state_cv_;
  bool started_ = false;   // guarded by state_mutex_
  bool stopped_ = false;   // guarded by state_mutex_
  std::optional<Error> failure_;  // guarded by state_mutex_
};

// One connection. Lives on one IoThread: every member is touched only by
// that thread, except through send(), which hops onto it.
class Session final : public std::enable_shared_from_this<Session>, public Responder::Sink {
 public:
  Session(Transport& transport, IoThread& home, Socket socket)
      : transport_(transport), home_(home), socket_(std::move(socket)),
        timer_(home.context.get_executor()) {
    boost::system::error_code ec;
    const tcp::endpoint peer = socket_.remote_endpoint(ec);
    if (!ec) remote_ = fmt::format("{}:{}", peer.address().to_string(), peer.port());
    buffer_.max_size(transport_.options().max_head_bytes + kReadChunk);
  }
  ~Session() {
    {
      std::lock_guard lock(home_.sessions_mutex);
      home_.sessions.erase(registration_);
    }
    transport_.session_closed();
  }

  // Before start(), on the accepting thread.
  void registered(std::list<std::weak_ptr<Session>>::iterator registration) {
    registration_ = registration;
  }

  void start() { next_request(); }

  // Stop: a connection waiting on its client closes now; one whose request
  // is being handled closes once it is answered.
  void on_stop() {
    if (state_ == State::kReading) close();
  }

  void send(std::uint64_t request, HttpResponse response) override {
    net::dispatch(home_.context,
                  [self = shared_from_this(), request, r = std::move(response)]() mutable {
                    // Only the first answer to the request being handled counts.
                    if (self->state_ != State::kHandling || request != self->requests_) return;
                    self->write(std::move(r), Origin::kHandler);
                  });
  }

 private:
  enum class State { kReading, kHandling, kWriting, kClosed };
  // Who answers: the handler after the whole request, check_head() before
  // its body, or the transport refusing it.
  enum class Origin { kHandler, kEarly, kRefusal };

  const TransportOptions& options() const { return transport_.options(); }

  void next_request() {
    if (transport_.stopping()) return close();
    parser_.emplace();
    // The limits that a reload may change, as they are now: one request
    // sees one value of each.
    limits_ = transport_.limits();
    parser_->header_limit(static_cast<std::uint32_t>(options().max_head_bytes));
    parser_->body_limit(limits_.max_body_bytes);
    head_checked_ = false;
    body_announced_ = false;
    is_head_ = false;
    http10_ = false;
    body_wire_bytes_ = 0;
    head_bytes_ = 0;
    request_ = HttpRequest{};
    method_.clear();
    path_.clear();
    checked_ = false;
    state_ = State::kReading;
    started_ = buffer_.size() > 0;  // pipelined bytes are this request's first
    if (started_) {
      request_began_ = SteadyClock::now();
      request_deadline_ = request_began_ + limits_.request_timeout;
    }
    parse();
  }

  void parse() {
    for (;;) {
      if (buffer_.size() == 0) return read_more();
      const bool head_was_done = parser_->is_header_done();
      const auto data = buffer_.data();
      beast::error_code ec;
      const std::size_t used = parser_->put(data, ec);
      if (!head_was_done) {
        // Beast consumes the start line and each complete field as it goes
        // (its header_limit bounds one call, not the head), so the head is
        // measured and checked here, piece by piece. A field is consumed
        // only once the byte after its line end is known not to fold it,
        // so a fold never straddles two pieces.
        const std::string_view piece(static_cast<const char*>(data.data()), used);
        head_bytes_ += used;
        if (piece.find("\n ") != std::string_view::npos ||
            piece.find("\n\t") != std::string_view::npos) {
          return refuse(400, "bad_request", "obsolete line folding is not accepted");
        }
      } else {
        body_wire_bytes_ += used;
      }
      buffer_.consume(used);
      const bool head_done = parser_->is_header_done();
      if (head_done ? head_bytes_ > options().max_head_bytes
                    : head_bytes_ + buffer_.size() > options().max_head_bytes) {
        return refuse(431, "header_too_large", "the request head is over the limit");
      }
      if (ec == http::error::need_more) {
        // What waits in the buffer belongs to this request's body.
        if (head_done && body_wire_bytes_ + buffer_.size() > limits_.max_body_bytes) {
          return refuse(413, "payload_too_large", "the request body is over the limit");
        }
        if (used == 0) return read_more();
        continue;
      }
      if (ec) return refuse_parse_error(ec);
      if (head_done && !head_checked_) {
        head_checked_ = true;
        if (!check_head()) return;  // answered, or waiting for the interim answer to go out
      }
      if (body_wire_bytes_ > limits_.max_body_bytes) {
        return refuse(413, "payload_too_large", "the request body is over the limit");
      }
      if (parser_->is_done()) return dispatch();
    }
  }

  void refuse_parse_error(const beast::error_code& ec) {
    if (ec == http::error::header_limit) {
      return refuse(431, "header_too_large", "the request head is over the limit");
    }
    if (ec == http::error::body_limit) {
      return refuse(413, "payload_too_large", "the request body is over the limit");
    }
    return refuse(400, "bad_request", fmt::format("malformed request: {}", ec.message()));
  }

  // The framing policy of http_transport.h. False when the request was
  // answered here (or the parse continues after a 100 Continue).
  bool check_head() {
    const auto& m = parser_->get();
    std::size_t lengths = 0, encodings = 0, hosts = 0;
    std::string_view length, encoding;
    bool content_encoding = false;
    for (const auto& field : m) {
      const std::string_view name = sv(field.name_string());
      if (iequals(name, "content-length")) {
        ++lengths;
        length = sv(field.value());
      } else if (iequals(name, "transfer-encoding")) {
        ++encodings;
        encoding = sv(field.value());
      } else if (iequals(name, "host")) {
        ++hosts;
      } else if (iequals(name, "content-encoding")) {
        content_encoding = true;
      }
    }
    request_.method = std::string(sv(m.method_string()));
    method_ = request_.method;
    is_head_ = m.method() == http::verb::head;
    http10_ = m.version() < 11;
    if (lengths > 1) return refuse(400, "bad_request", "more than one Content-Length"), false;
    if (lengths == 1 && encodings > 0) {
      return refuse(400, "bad_request", "Content-Length together with Transfer-Encoding"), false;
    }
    if (encodings > 1 || (encodings == 1 && !iequals(trim(encoding), "chunked"))) {
      return refuse(400, "bad_request", "the only Transfer-Encoding accepted is chunked"), false;
    }
    if (encodings == 1 && m.version() < 11) {
      return refuse(400, "bad_request", "Transfer-Encoding on HTTP/1.0"), false;
    }
    const std::string_view digits = trim(length);
    if (lengths == 1 && (!all_digits(digits) || digits.size() > 18)) {
      return refuse(400, "bad_request", "Content-Length is not a number"), false;
    }
    const std::uint64_t declared = lengths == 1 ? std::stoull(std::string(digits)) : 0;
    body_announced_ = encodings == 1 || declared > 0;
    const auto verb = m.method();
    if (body_announced_ &&
        (verb == http::verb::get || verb == http::verb::head || verb == http::verb::options)) {
      return refuse(400, "bad_request",
                    fmt::format("a {} request cannot have a body", request_.method)), false;
    }
    if (m.version() >= 11 && hosts != 1) {
      return refuse(400, "bad_request", "an HTTP/1.1 request needs exactly one Host"), false;
    }
    if (content_encoding) {
      return refuse(415, "unsupported_media_type",
                    "request bodies with a Content-Encoding are not accepted"), false;
    }
    if (declared > limits_.max_body_bytes) {
      return refuse(413, "payload_too_large", "the request body is over the limit"), false;
    }
    request_.target = std::string(sv(m.target()));
    if (!parse_target(request_.target, request_.path, request_.query)) {
      return refuse(400, "bad_request", "the request target is not a valid origin-form path"),
             false;
    }
    request_.headers.reserve(8);
    for (const auto& field : m) {
      request_.headers.emplace_back(std::string(sv(field.name_string())),
                                     std::string(sv(field.value())));
    }
    request_.remote = remote_;
    head_at_ = SteadyClock::now();
    // The request moves to the handler; the answer's record keeps these.
    path_ = request_.path;
    checked_ = true;

    if (auto early = transport_.handler().check_head(request_)) {
      // The body (if any) is not read: nothing after it on this connection
      // is a request.
      write(std::move(*early), Origin::kEarly);
      return false;
    }
    parser_->eager(true);
    const auto expect = m.find(http::field::expect);
    if (body_announced_ && expect != m.end() && iequals(trim(sv(expect->value())), "100-continue") &&
        buffer_.size() == 0) {
      send_continue();
      return false;
    }
    return true;
  }

  void send_continue() {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    expire_at(request_deadline_);
    net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->on_io_error(ec);
                       self->parse();
                     });
  }

  void read_more() {
    if (buffer_.size() >= buffer_.max_size()) {
      // Only a head can fill the buffer (body bytes are consumed as read).
      return refuse(431, "header_too_large", "the request head is over the limit");
    }
    const auto now = SteadyClock::now();
    if (!started_) {
      expire_at(now + options().keep_alive_timeout);
    } else {
      expire_at(std::min(request_deadline_, now + options().io_timeout));
    }
    if (started_ && last_read_ < kTrickleRead && now - request_began_ >= kTrickleAfter) {
      return park_here();
    }
    if (low_water_) set_low_water(1);  // it sped up: read as it comes again
    socket_.async_read_some(buffer_.prepare(read_room()),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->on_read(ec, n);
                            });
  }

  std::size_t read_room() const {
    return std::min(kReadChunk, buffer_.max_size() - buffer_.size());
  }

  void on_read(const beast::error_code& ec, std::size_t n) {
    if (ec) return on_io_error(ec);
    buffer_.commit(n);
    last_read_ = n;
    if (!started_ && n > 0) {
      started_ = true;
      request_began_ = SteadyClock::now();
      request_deadline_ = request_began_ + limits_.request_timeout;
    }
    parse();
  }

 public:
  // A tick of the I/O thread: read what a parked connection's client sent
  // meanwhile, without waiting (its deadline stays as read_more() set it).
  void resume() {
    if (!socket_.is_open() || state_ != State::kReading) return;  // closed meanwhile
    beast::error_code ec;
    const std::size_t n = socket_.read_some(buffer_.prepare(read_room()), ec);
    if (ec == net::error::would_block) return park_here();
    on_read(ec, n);
  }

 private:
  void park_here() {
    if (!low_water_) {
      boost::system::error_code ignored;
      socket_.non_blocking(true, ignored);  // for resume()'s read
      set_low_water(kTrickleRead);
    }
    park(home_, shared_from_this());
  }

  void set_low_water(std::size_t bytes) {
    low_water_ = bytes > 1;
    boost::system::error_code ignored;  // without it, reads come byte by byte as before
    socket_.set_option(net::socket_base::receive_low_watermark(static_cast<int>(bytes)), ignored);
  }

  void on_io_error(const beast::error_code&) { close(); }

  void dispatch() {
    state_ = State::kHandling;
    expire_at(SteadyClock::time_point::max());
    keep_alive_ = parser_->keep_alive();
    request_.body = parser_->release().body();
    parser_.reset();
    ++requests_;
    transport_.handler().handle(std::move(request_), Responder(shared_from_this(), requests_));
  }

  void refuse(int status, std::string_view code, std::string_view message) {
    transport_.mutable_stats().refused.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r = transport_.handler().refusal(status, code, message);
    if (!checked_) head_at_ = SteadyClock::now();
    // A HEAD's answer has no body, refusals included. Beast consumes the
    // request line only once it is whole, so after any head bytes were
    // consumed the method is known even if the head is not.
    if (parser_ && head_bytes_ > 0) {
      is_head_ = parser_->get().method() == http::verb::head;
      if (method_.empty()) method_ = std::string(sv(parser_->get().method_string()));
    }
    write(std::move(r), Origin::kRefusal);
  }

  void write(HttpResponse r, Origin origin) {
    bool fields_ok = safe_field_text(r.content_type);
    for (const auto& [name, value] : r.headers) {
      fields_ok = fields_ok && !name.empty() && safe_field_text(name) && safe_field_text(value);
    }
    if (!fields_ok) {
      log_message(LogLevel::kError, "a response header held CR, LF or NUL; answering 500");
      r = transport_.handler().refusal(500, "internal", "internal error");
    }
    // Keep the connection only after a request read whole (an early answer
    // to a request without a body is one) whose client keeps it.
    bool keep = false;
    if (origin == Origin::kHandler) {
      keep = keep_alive_;
    } else if (origin == Origin::kEarly && !body_announced_) {
      keep = parser_->keep_alive();
    }
    close_after_ = r.close || !keep || transport_.stopping();
    // What the client sent after a refused head may still be arriving:
    // drain it for a moment so that it reads this answer, not a reset.
    linger_ = close_after_ && origin != Origin::kHandler;

    const auto status = static_cast<unsigned>(r.status);
    out_head_.clear();
    fmt::format_to(std::back_inserter(out_head_), "HTTP/1.1 {} {}\r\n", status,
                   sv(http::obsolete_reason(http::int_to_status(status))));
    if (!r.content_type.empty()) {
      fmt::format_to(std::back_inserter(out_head_), "Content-Type: {}\r\n", r.content_type);
    }
    fmt::format_to(std::back_inserter(out_head_), "Content-Length: {}\r\n", r.payload().size());
    for (const auto& [name, value] : r.headers) {
      fmt::format_to(std::back_inserter(out_head_), "{}: {}\r\n", name, value);
    }
    if (close_after_) {
      out_head_ += "Connection: close\r\n";
    } else if (http10_) {
      out_head_ += "Connection: keep-alive\r\n";  // HTTP/1.0 closes unless told
    }
    out_head_ += "\r\n";

    transport_.handler().answered(AnsweredRequest{
        .method = method_,
        .path = path_,
        .remote = remote_,
        .checked = checked_,
        .status = r.status,
        .seconds = std::chrono::duration<double>(SteadyClock::now() - head_at_).count()});

    out_ = std::move(r);
    state_ = State::kWriting;
    expire_at(SteadyClock::now() + limits_.request_timeout);
    std::array<net::const_buffer, 2> buffers = {
        net::buffer(out_head_),
        is_head_ ? net::const_buffer() : net::buffer(out_.payload().data(), out_.payload().size())};
    net::async_write(socket_, buffers,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_written(ec);
                     });
  }

  void on_written(const beast::error_code& ec) {
    out_ = HttpResponse{};
    if (ec) return on_io_error(ec);
    if (linger_) return linger();
    if (close_after_) return close();
    // Keep the buffer small between requests on idle connections.
    if (buffer_.size() == 0 && buffer_.capacity() > kReadChunk) buffer_.shrink_to_fit();
    next_request();
  }

  void linger() {
    state_ = State::kClosed;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    if (low_water_) set_low_water(1);  // drain every byte as it comes
    buffer_.clear();
    expire_at(SteadyClock::now() + kLingerTime);
    drain(0);
  }

  void drain(std::size_t drained) {
    if (drained >= kLingerBytes) return close();
    socket_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this(), drained](beast::error_code ec,
                                                                 std::size_t n) {
                              if (ec) return self->close();
                              self->buffer_.clear();
                              self->drain(drained + n);
                            });
  }

  void close() {
    state_ = State::kClosed;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    // The pending wait holds the session: let it go now.
    deadline_ = SteadyClock::time_point::max();
    timer_.cancel();
  }

  // The connection's one deadline (max: none), for whatever it waits on.
  // Moving it later (a trickling client's every read moves the inactivity
  // deadline) only stores the time: the timer, armed for an earlier time,
  // finds the deadline moved when it fires and waits again. So a
  // connection costs about one timer operation per deadline that passes,
  // not one per read (a cancel and a re-arm of Asio's timer queue, plus
  // the operation's allocation, for every byte a trickling client sends).
  void expire_at(SteadyClock::time_point deadline) {
    deadline_ = deadline;
    if (deadline < armed_) arm(deadline);
  }

  void arm(SteadyClock::time_point at) {
    armed_ = at;
    timer_.expires_at(at);  // cancels a wait for a later time (its handler sees operation_aborted)
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      self->on_timer(ec);
    });
  }

  void on_timer(const boost::system::error_code& ec) {
    if (ec == net::error::operation_aborted || !socket_.is_open()) return;
    const auto now = SteadyClock::now();
    if (now < timer_.expiry()) return;  // re-armed after this wait completed: that wait decides
    armed_ = SteadyClock::time_point::max();
    if (deadline_ == SteadyClock::time_point::max()) return;  // nothing waits now
    if (now < deadline_) return arm(deadline_);
    // A deadline missed inside a request or a response: a slow or stalled
    // client. (An idle keep-alive connection timing out is routine, and so
    // is the end of lingering after a refusal.) Closing ends the pending
    // read or write.
    if (state_ != State::kClosed && (started_ || state_ == State::kWriting)) {
      transport_.mutable_stats().timed_out.fetch_add(1, std::memory_order_relaxed);
    }
    close();
  }

  Transport& transport_;
  IoThread& home_;
  std::list<std::weak_ptr<Session>>::iterator registration_;
  Socket socket_;
  Timer timer_;
  SteadyClock::time_point deadline_ = SteadyClock::time_point::max();  // see expire_at()
  SteadyClock::time_point armed_ = SteadyClock::time_point::max();     // timer_'s pending wait
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  State state_ = State::kReading;
  bool started_ = false;         // a byte of the current request has arrived
  bool head_checked_ = false;
  bool body_announced_ = false;
  bool is_head_ = false;
  bool http10_ = false;
  bool keep_alive_ = true;
  ReloadableLimits limits_;  // of the current request (next_request())
  bool close_after_ = false;
  bool linger_ = false;
  std::size_t head_bytes_ = 0;       // of the current request's head, consumed so far
  std::size_t body_wire_bytes_ = 0;  // of its body, framing included
  std::uint64_t requests_ = 0;  // handed to the handler on this connection
  SteadyClock::time_point request_deadline_;
  SteadyClock::time_point request_began_;  // its first byte
  std::size_t last_read_ = 0;              // bytes
  bool low_water_ = false;                 // SO_RCVLOWAT raised (parked, see kTrickleAfter)
  SteadyClock::time_point head_at_;
  HttpRequest request_;
  std::string method_;    // of the current request, once its head is checked
  std::string path_;      // likewise
  bool checked_ = false;  // the handler's check_head() has seen it
  std::string out_head_;
  HttpResponse out_;
};

void resume_due(IoThread& io);

void wait_for_due(IoThread& io) {
  io.tick_pending = true;
  io.trickle_tick->expires_at(
      std::max(io.parked.front().first, SteadyClock::now() + kTickGranularity));
  io.trickle_tick->async_wait([&io](const boost::system::error_code&) { resume_due(io); });
}

void park(IoThread& io, std::shared_ptr<Session> session) {
  io.parked.emplace_back(SteadyClock::now() + kTrickleTick, std::move(session));
  if (!io.tick_pending) wait_for_due(io);
}

void resume_due(IoThread& io) {
  const auto now = SteadyClock::now();
  for (std::size_t n = 0; n < kResumeBatch && !io.parked.empty() && io.parked.front().first <= now;
       ++n) {
    std::shared_ptr<Session> session = std::move(io.parked.front().second);
    io.parked.pop_front();
    session->resume();  // may park it again, at the back
  }
  if (io.parked.empty()) {
    io.tick_pending = false;
  } else if (io.parked.front().first <= now) {
    net::post(io.context, [&io] { resume_due(io); });  // the rest after what else is ready
  } else {
    wait_for_due(io);
  }
}

// --- Transport ---------------------------------------------------------------------

Status Transport::start() {
  {
    std::lock_guard lock(state_mutex_);
    if (started_) return make_error(ErrorCode::kFailedPrecondition, "already started");
    started_ = true;
  }
  std::size_t count = options_.io_threads;
  if (count == 0) count = internal::usable_cpus();
  for (std::size_t i = 0; i < count; ++i) {
    threads_.push_back(std::make_unique<IoThread>());
    IoThread& io = *threads_.back();
    io.work.emplace(io.context.get_executor());
    // Asio makes a loop's reactor (an epoll, an eventfd, a timerfd) with its
    // first socket or timer. Made now, not with the first connection handed
    // to this thread, which may come when descriptors have run out (the
    // reactor's constructor then throws).
    io.reactor_ready.emplace(io.context);
    io.trickle_tick.emplace(io.context.get_executor());
  }
  net::io_context& main = threads_.front()->context;

  boost::system::error_code ec;
  tcp::resolver resolver(main);
  const auto results = resolver.resolve(options_.host, std::to_string(options_.port),
                                        tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("cannot resolve listen host \"{}\": {}", options_.host,
                                  ec ? ec.message() : "no address"));
  }
  const tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor_.emplace(main);
  auto cannot = [&](std::string_view step) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("cannot listen on {}:{}: {} failed: {}", options_.host,
                                  options_.port, step, ec.message()));
  };
  if (acceptor_->open(endpoint.protocol(), ec); ec) return cannot("socket");
  // SO_REUSEADDR only: a restart can bind while old connections linger in
  // TIME_WAIT. Never SO_REUSEPORT, which would let another process of the
  // same user bind the port and take a share of the connections.
  if (acceptor_->set_option(net::socket_base::reuse_address(true), ec); ec) {
    return cannot("SO_REUSEADDR");
  }
  if (acceptor_->bind(endpoint, ec); ec) return cannot("bind");
  if (acceptor_->listen(SOMAXCONN, ec); ec) return cannot("listen");
  const tcp::endpoint bound = acceptor_->local_endpoint(ec);
  if (ec) return cannot("getsockname");
  if (options_.require_loopback && !bound.address().is_loopback()) {
    return make_error(ErrorCode::kConfig,
                      fmt::format("\"{}\" is bound to {}, not a loopback address; without an "
                                  "API token only loopback is served",
                                  options_.host, bound.address().to_string()));
  }
  port_.store(bound.port());
  backoff_.emplace(main);

  HttpResponse busy =
      handler_.refusal(503, "over_capacity", "the server is at its connection limit");
  over_capacity_answer_ = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\n{}",
      busy.content_type, busy.payload().size(), busy.payload());

  accept();
  for (auto& t : threads_) {
    IoThread* io = t.get();
    io->thread = std::thread([io] {
      (void)pthread_setname_np(pthread_self(), "aicache-io");
      // A handler that throws (out of memory, say) loses its connection,
      // not the thread: the loop goes on.
      for (;;) {
        try {
          io->context.run();
          return;
        } catch (const std::exception& e) {
          log_message(LogLevel::kError, fmt::format("I/O thread: {}", e.what()));
        } catch (...) {
          log_message(LogLevel::kError, "I/O thread: unknown exception");
        }
      }
    });
  }
  return {};
}

void Transport::accept() {
  IoThread& home = *threads_[next_thread_];
  next_thread_ = (next_thread_ + 1) % threads_.size();
  acceptor_->async_accept(home.context,
                          [this, &home](const boost::system::error_code& ec, Socket socket) {
                            on_accept(ec, std::move(socket), home);
                          });
}

void Transport::on_accept(const boost::system::error_code& ec, Socket socket,
                          IoThread& home) {
  if (stopping() || ec == net::error::operation_aborted) return;
  if (ec) {
    if (!transient_accept_error(ec)) {
      return fail(fmt::format("accepting connections failed: {}", ec.message()));
    }
    if (!resource_accept_error(ec)) return accept();
    // Out of descriptors or memory: accepting at once would spin; wait a
    // little longer each time until one succeeds.
    backoff_delay_ = std::clamp(backoff_delay_ * 2, std::chrono::milliseconds(10),
                                std::chrono::milliseconds(1000));
    log_message(LogLevel::kWarning, fmt::format("accept: {}; retrying in {} ms", ec.message(),
                                                backoff_delay_.count()));
    backoff_->expires_after(backoff_delay_);
    backoff_->async_wait([this](const boost::system::error_code& wait_ec) {
      if (!wait_ec && !stopping()) accept();
    });
    return;
  }
  backoff_delay_ = std::chrono::milliseconds(0);
  stats_.accepted.fetch_add(1, std::memory_order_relaxed);
  if (stats_.open.load(std::memory_order_relaxed) >=
      static_cast<std::int64_t>(options_.max_connections)) {
    refuse_over_capacity(socket);
  } else {
    stats_.open.fetch_add(1, std::memory_order_relaxed);
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto session = std::make_shared<Session>(*this, home, std::move(socket));
    {
      std::lock_guard lock(home.sessions_mutex);
      session->registered(home.sessions.insert(home.sessions.end(), session));
    }
    net::post(home.context, [session] { session->start(); });
  }
  accept();
}

void Transport::refuse_over_capacity(Socket& socket) {
  stats_.over_capacity.fetch_add(1, std::memory_order_relaxed);
  // Best effort, never blocking: the answer fits any fresh socket's buffer.
  (void)::send(socket.native_handle(), over_capacity_answer_.data(), over_capacity_answer_.size(),
               MSG_NOSIGNAL | MSG_DONTWAIT);
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void Transport::session_closed() {
  if (stats_.open.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping()) {
    std::lock_guard lock(state_mutex_);
    state_cv_.notify_all();
  }
}

void Transport::fail(std::string message) {
  log_message(LogLevel::kError, message);
  std::lock_guard lock(state_mutex_);
  if (!failure_) failure_ = Error{ErrorCode::kUnavailable, std::move(message)};
  state_cv_.notify_all();
}

void Transport::stop() {
  {
    std::lock_guard lock(state_mutex_);
    if (!started_ || stopped_) return;
  }
  if (stopping_.exchange(true)) {
    // Another thread is stopping: wait for it.
    std::unique_lock lock(state_mutex_);
    state_cv_.wait(lock, [this] { return stopped_; });
    return;
  }
  if (!threads_.empty()) {
    std::promise<void> closed;
    net::post(threads_.front()->context, [this, &closed] {
      boost::system::error_code ignored;
      if (acceptor_) acceptor_->close(ignored);
      if (backoff_) backoff_->cancel();
      closed.set_value();
    });
    // The loop may not run (start() failed after making threads): then
    // there is no accept to stop.
    if (threads_.front()->thread.joinable()) closed.get_future().wait();
  }
  for (auto& t : threads_) {
    IoThread* io = t.get();
    net::post(io->context, [io] {
      std::vector<std::shared_ptr<Session>> live;
      {
        std::lock_guard lock(io->sessions_mutex);
        for (auto& weak : io->sessions) {
          if (auto s = weak.lock()) live.push_back(std::move(s));
        }
      }
      for (auto& s : live) s->on_stop();
      io->parked.clear();  // closed by on_stop(): let them go now, not at the next tick
      io->trickle_tick->cancel();
    });
  }
  {
    std::unique_lock lock(state_mutex_);
    state_cv_.wait(lock, [this] { return stats_.open.load() == 0; });
  }
  for (auto& t : threads_) t->work.reset();
  for (auto& t : threads_) {
    if (t->thread.joinable()) t->thread.join();
  }
  {
    std::lock_guard lock(state_mutex_);
    stopped_ = true;
  }
  state_cv_.notify_all();
}

Status Transport::wait() {
  std::unique_lock lock(state_mutex_);
  state_cv_.wait(lock, [this] { return stopped_ || failure_.has_value(); });
  if (failure_) return std::unexpected(*failure_);
  return {};
}

}  // namespace

Result<std::unique_ptr<HttpTransport>> HttpTransport::create(TransportOptions options,
                                                             RequestHandler& handler) {
  if (options.max_connections == 0 || options.max_body_bytes == 0 ||
      options.max_head_bytes < 1024) {
    return make_error(ErrorCode::kInvalidArgument,
                      "max_connections and max_body_bytes must be positive, max_head_bytes at "
                      "least 1024");
  }
  if (options.io_timeout.count() <= 0 || options.request_timeout.count() <= 0 ||
      options.keep_alive_timeout.count() < 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "io_timeout and request_timeout must be positive and keep_alive_timeout "
                      "not negative");
  }
  return std::unique_ptr<HttpTransport>(new Transport(std::move(options), handler));
}

}  // namespace aicache::server
