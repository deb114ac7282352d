// Fuzz target: the .env parser (parse_dotenv and the line-keeping parser
// behind it, src/config/dotenv_internal.h).
//
// Properties, beyond "no crash, no leak, no undefined behaviour":
//  - parse_dotenv and parse_dotenv_entries agree: same result, same keys and
//    values, every line number within the text;
//  - an error is kConfig, starts with the file name and is already
//    printable() text: well-formed UTF-8 with no control, bidi or invisible
//    character (the parser must not echo raw bytes of a line, or a terminal
//    escape, into logs);
//  - a round trip: the entries, written back as KEY="escaped value" lines,
//    parse to exactly the same entries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "aicache/config.h"
#include "aicache/log.h"
#include "config/dotenv_internal.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kFile = "fuzz.env";

bool already_printable(std::string_view text) {
  return aicache::printable(text, std::string_view::npos) == text;
}

// A double-quoted .env value whose escapes give back exactly `value`.
std::string double_quoted(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
        break;
    }
  }
  out += '"';
  return out;
}

std::size_t count_lines(std::string_view text) {
  std::size_t lines = 1;
  for (char c : text) lines += c == '\n' ? 1 : 0;
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto entries = aicache::config_internal::parse_dotenv_entries(text, kFile);
  auto plain = aicache::parse_dotenv(text, kFile);
  check(entries.has_value() == plain.has_value());
  if (!entries) {
    check(entries.error().code == aicache::ErrorCode::kConfig);
    check(entries.error().message.starts_with(std::string(kFile) + ":"));
    check(already_printable(entries.error().message));
    check(plain.error().message == entries.error().message);
    return 0;
  }

  check(entries->size() == plain->size());
  const std::size_t lines = count_lines(text);
  std::string rewritten;
  for (const auto& [key, entry] : *entries) {
    check(!key.empty());
    check(entry.line >= 1 && static_cast<std::size_t>(entry.line) <= lines);
    auto it = plain->find(key);
    check(it != plain->end() && it->second == entry.value);
    rewritten += key + "=" + double_quoted(entry.value) + "\n";
  }

  auto again = aicache::parse_dotenv(rewritten, kFile);
  check(again.has_value());
  check(*again == *plain);
  return 0;
}
