// .env parsing, the subset of python-dotenv's syntax that Django projects use.
//
// Error messages quote the key (a name) but never a value: .env files hold
// passwords, and a malformed line may be nothing but a secret.

#include <fmt/format.h>

#include <map>
#include <string>
#include <string_view>

#include "aicache/config.h"
#include "aicache/log.h"
#include "config/dotenv_internal.h"
#include "core/try.h"

namespace aicache {
namespace config_internal {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_left(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  return s;
}

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view trim(std::string_view s) { return trim_right(trim_left(s)); }

bool is_key_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_key_char(char c) { return is_key_start(c) || (c >= '0' && c <= '9'); }

bool valid_key(std::string_view key) {
  if (key.empty() || !is_key_start(key.front())) return false;
  for (char c : key) {
    if (!is_key_char(c)) return false;
  }
  return true;
}

// Whatever follows a closing quote may only be blanks and a comment.
bool only_comment_left(std::string_view rest) {
  rest = trim_left(rest);
  return rest.empty() || rest.front() == '#';
}

}  // namespace

Result<DotenvEntries> parse_dotenv_entries(std::string_view text, std::string_view filename) {
  DotenvEntries entries;
  // A UTF-8 byte order mark, as some Windows editors write.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);

  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);

    auto fail = [&](std::string_view what) {
      return make_error(ErrorCode::kConfig, fmt::format("{}:{}: {}", filename, line_no, what));
    };

    line = trim_left(line);
    if (line.empty() || line.front() == '#') continue;
    if (line.starts_with("export") && line.size() > 6 && is_blank(line[6])) {
      line = trim_left(line.substr(6));
    }

    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) return fail("expected KEY=VALUE");
    const std::string_view key = trim(line.substr(0, eq));
    if (key.empty()) return fail("missing key before '='");
    if (!valid_key(key)) {
      // A key is a name, not a secret, but a line that is not KEY=VALUE at
      // all may be anything: show at most a short, printable excerpt.
      return fail(
          fmt::format("invalid key '{}' (must match [A-Za-z_][A-Za-z0-9_]*)", printable(key, 40)));
    }

    const std::string_view raw = line.substr(eq + 1);
    const std::string_view rest = trim_left(raw);
    std::string value;
    if (!rest.empty() && rest.front() == '\'') {
      const std::size_t close = rest.find('\'', 1);
      if (close == std::string_view::npos) {
        return fail(fmt::format("unterminated single-quoted value of {}", key));
      }
      value = rest.substr(1, close - 1);
      if (!only_comment_left(rest.substr(close + 1))) {
        return fail(fmt::format("unexpected text after the closing quote of {}", key));
      }
    } else if (!rest.empty() && rest.front() == '"') {
      std::size_t i = 1;
      bool closed = false;
      for (; i < rest.size(); ++i) {
        const char c = rest[i];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i + 1 < rest.size()) {
          const char next = rest[++i];
          switch (next) {
            case 'n':
              value += '\n';
              break;
            case 't':
              value += '\t';
              break;
            case 'r':
              value += '\r';
              break;
            case '"':
              value += '"';
              break;
            case '\\':
              value += '\\';
              break;
            case '$':
              value += '$';
              break;
            // python-dotenv keeps unknown escapes as written.
            default:
              value += '\\';
              value += next;
              break;
          }
          continue;
        }
        value += c;
      }
      if (!closed) return fail(fmt::format("unterminated double-quoted value of {}", key));
      if (!only_comment_left(rest.substr(i + 1))) {
        return fail(fmt::format("unexpected text after the closing quote of {}", key));
      }
    } else {
      // Unquoted: a '#' starts a comment only after a blank, so "a#b" and
      // "A= #b" keep theirs, exactly as python-dotenv reads them.
      std::string_view v = rest;
      for (std::size_t i = 1; i < v.size(); ++i) {
        if (v[i] == '#' && is_blank(v[i - 1])) {
          v = v.substr(0, i);
          break;
        }
      }
      value = trim(v);
    }
    entries.insert_or_assign(std::string(key), DotenvValue{std::move(value), line_no});
  }
  return entries;
}

}  // namespace config_internal

Result<std::map<std::string, std::string, std::less<>>> parse_dotenv(std::string_view text,
                                                                     std::string_view filename) {
  AICACHE_ASSIGN_OR_RETURN(auto entries, config_internal::parse_dotenv_entries(text, filename));
  std::map<std::string, std::string, std::less<>> out;
  for (auto& [key, entry] : entries) out.emplace(key, std::move(entry.value));
  return out;
}

}  // namespace aicache
