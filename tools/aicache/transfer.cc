#include "transfer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <istream>
#include <memory>
#include <nlohmann/json.hpp>

#include "aicache/log.h"
#include "commands.h"

namespace aicache::cli {
namespace {

using SteadyClock = std::chrono::steady_clock;

// 100 years, as for --ttl and AICACHE_DEFAULT_TIMEOUT.
constexpr std::int64_t kMaxTtlSeconds = 100LL * 365 * 24 * 3600;

Error bad_line(std::string what) { return Error{ErrorCode::kInvalidArgument, std::move(what)}; }

// Reads lines of at most `max` bytes; a longer line is consumed and
// reported as too long, never held whole.
class LineReader {
 public:
  LineReader(std::istream& in, std::size_t max) : in_(in), max_(max) {}

  // False at the end. `too_long` tells a line over the limit (`line` is
  // then empty).
  bool next(std::string& line, bool& too_long) {
    line.clear();
    too_long = false;
    bool any = false;
    char c;
    while (in_.get(c)) {
      any = true;
      ++bytes_;
      if (c == '\n') return true;
      if (too_long) continue;
      if (line.size() == max_) {
        too_long = true;
        line.clear();
        line.shrink_to_fit();
        continue;
      }
      line.push_back(c);
    }
    return any;
  }
  std::uint64_t bytes() const { return bytes_; }

 private:
  std::istream& in_;
  std::size_t max_;
  std::uint64_t bytes_ = 0;
};

// A progress line on a terminal: done, rate, ETA (when the size is known).
class Progress {
 public:
  Progress(bool enabled, std::ostream& err, std::optional<std::uint64_t> total_bytes)
      : enabled_(enabled), err_(err), total_(total_bytes), started_(SteadyClock::now()) {}

  void update(std::uint64_t lines, std::uint64_t bytes) {
    if (!enabled_) return;
    const auto now = SteadyClock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - started_).count();
    const double rate = secs > 0 ? static_cast<double>(lines) / secs : 0;
    std::string bar;
    if (total_ && *total_ > 0) {
      const double done = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(*total_));
      const int filled = static_cast<int>(done * 30);
      const double eta = done > 0 ? secs * (1 - done) / done : 0;
      bar = fmt::format("[{}{}] {:3.0f}% ", std::string(filled, '#'), std::string(30 - filled, '.'),
                        done * 100);
      err_ << fmt::format("\r{}{} lines, {:.0f}/s, ETA {:.0f} s   ", bar, lines, rate, eta)
           << std::flush;
    } else {
      err_ << fmt::format("\r{} lines, {:.0f}/s   ", lines, rate) << std::flush;
    }
    drawn_ = true;
  }
  void finish() {
    if (drawn_) err_ << "\r\033[K" << std::flush;
  }
  double seconds() const {
    return std::chrono::duration<double>(SteadyClock::now() - started_).count();
  }

 private:
  bool enabled_;
  std::ostream& err_;
  std::optional<std::uint64_t> total_;
  SteadyClock::time_point started_;
  SteadyClock::time_point last_{};
  bool drawn_ = false;
};

bool is_outage(const Error& error) {
  return error.code != ErrorCode::kInvalidArgument && error.code != ErrorCode::kFailedPrecondition;
}

}  // namespace

Result<WarmEntry> parse_warm_line(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::unexpected(bad_line("not JSON"));
  if (!j.is_object()) return std::unexpected(bad_line("not a JSON object"));
  WarmEntry entry;
  bool has_family = false, has_id = false, has_value = false;
  for (auto& [name, field] : j.items()) {
    if (name == "family") {
      if (!field.is_string()) return std::unexpected(bad_line("\"family\" is not a string"));
      const auto& text = field.get_ref<const std::string&>();
      if (text == "token") {
        return std::unexpected(
            bad_line("tokens are never imported (the token manager fetches them)"));
      }
      auto family = parse_cache_family(text);
      if (!family) {
        return std::unexpected(bad_line(fmt::format(
            "unknown family \"{}\" (conversation, ai_config or kv)", printable(text, 40))));
      }
      entry.family = *family;
      has_family = true;
    } else if (name == "id") {
      if (!field.is_string() || field.get_ref<const std::string&>().empty()) {
        return std::unexpected(bad_line("\"id\" is not a non-empty string"));
      }
      entry.id = field.get<std::string>();
      has_id = true;
    } else if (name == "value") {
      entry.value = JsonDocument(std::move(field));
      has_value = true;
    } else if (name == "ttl") {
      if (!field.is_number_integer() || field.get<std::int64_t>() < 1 ||
          field.get<std::int64_t>() > kMaxTtlSeconds) {
        return std::unexpected(bad_line(
            fmt::format("\"ttl\" is not a whole number of seconds from 1 to {}", kMaxTtlSeconds)));
      }
      entry.ttl = Ttl(std::chrono::seconds(field.get<std::int64_t>()));
    } else {
      return std::unexpected(bad_line(fmt::format(
          "unknown field \"{}\" (family, id, value, ttl)", printable(name, 40))));
    }
  }
  if (!has_family) return std::unexpected(bad_line("no \"family\""));
  if (!has_id) return std::unexpected(bad_line("no \"id\""));
  if (!has_value) return std::unexpected(bad_line("no \"value\""));
  return entry;
}

int run_warm(Session& session, const Request& request) {
  std::istream* in = &std::cin;
  std::unique_ptr<std::ifstream> file;
  std::optional<std::uint64_t> size;
  const std::string name = request.file == "-" ? "<stdin>" : request.file;
  if (request.file != "-") {
    file = std::make_unique<std::ifstream>(request.file, std::ios::binary);
    if (!*file) return session.usage(fmt::format("warm: cannot read {}", printable(name, 200)));
    in = file.get();
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(request.file, ec);
    if (!ec) size = bytes;
  }
  if (auto opened = session.backend().open(); !opened) return session.fail(opened.error());

  // A progress bar only for a person watching: stderr is a terminal.
  const bool terminal = &session.err() == &std::cerr && ::isatty(STDERR_FILENO) == 1;
  Progress progress(terminal, session.err(), size);
  LineReader reader(*in, kMaxWarmLineBytes);
  std::string line;
  bool too_long = false;
  std::uint64_t number = 0, loaded = 0, failed = 0;
  auto report = [&](std::string_view why) {
    progress.finish();
    session.err() << fmt::format("aicache: warm: {}:{}: {}\n", printable(name, 200), number, why);
    ++failed;
  };
  while (reader.next(line, too_long)) {
    ++number;
    if (too_long) {
      report(fmt::format("longer than {} bytes", kMaxWarmLineBytes));
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank
    auto entry = parse_warm_line(line);
    if (!entry) {
      report(entry.error().message);
      continue;
    }
    if (auto stored = session.backend().put_entry(entry->family, entry->id, entry->value,
                                                  entry->ttl);
        !stored) {
      if (is_outage(stored.error())) {
        progress.finish();
        const int rc =
            session.fail(fmt::format("warm: {}:{}", printable(name, 200), number), stored.error());
        session.err() << fmt::format("warm: stopped: {} loaded, {} failed\n", loaded, failed);
        return rc;
      }
      report(stored.error().message);
      continue;
    }
    ++loaded;
    progress.update(number, reader.bytes());
  }
  progress.finish();
  if (file && file->bad()) {
    return session.report(fmt::format("warm: reading {} failed after line {}", printable(name, 200),
                                      number),
                          kExitFailure);
  }
  session.err() << fmt::format("warm: {} loaded, {} failed, in {:.1f} s\n", loaded, failed,
                               progress.seconds());
  return failed == 0 ? kExitOk : kExitNotFound;
}

int run_export(Session& session, const Request& request) {
  const auto family = parse_cache_family(request.family);
  if (!family) {
    return session.usage(fmt::format("export: unknown family '{}' (conversation, ai_config or kv)",
                                     printable(request.family, 40)));
  }
  if (*family == CacheFamily::kToken) {
    return session.usage("export: tokens are never exported (the token manager fetches them)");
  }
  if (auto opened = session.backend().open(); !opened) return session.fail(opened.error());
  const bool terminal = &session.err() == &std::cerr && ::isatty(STDERR_FILENO) == 1;
  Progress progress(terminal, session.err(), std::nullopt);
  std::uint64_t written = 0, skipped = 0;
  std::string cursor;
  std::string line;
  do {
    auto page = session.backend().export_page(*family, cursor);
    if (!page) {
      progress.finish();
      const int rc = session.fail("export", page.error());
      session.err() << fmt::format("export: stopped after {} entries\n", written);
      return rc;
    }
    for (const ExportedEntry& e : page->entries) {
      line = R"({"family":")";
      line += to_string(*family);
      line += R"(","id":)";
      line += nlohmann::json(e.id).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      line += R"(,"value":)";
      line += e.value.text();
      if (e.ttl.state == KeyTtl::State::kExpiring) {
        line += fmt::format(R"(,"ttl":{})", (e.ttl.remaining.count() + 999) / 1000);
      }
      line += "}\n";
      session.out() << line;
      ++written;
    }
    skipped += page->skipped;
    progress.update(written, 0);
    cursor = std::move(page->cursor);
  } while (!cursor.empty());
  session.out() << std::flush;
  progress.finish();
  session.err() << fmt::format("export: {} {} entries written{}, in {:.1f} s\n", written,
                               to_string(*family),
                               skipped ? fmt::format(", {} skipped (not JSON)", skipped) : "",
                               progress.seconds());
  return kExitOk;
}

}  // namespace aicache::cli
