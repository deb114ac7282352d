// JsonDocument: a JSON value that carries its serialized text.
//
// Conversations, AI configurations and generic values are JSON. Serialising
// and parsing a 20-message conversation costs tens of microseconds, far more
// than the cache itself, so a JsonDocument keeps the text it was made from
// and parses it into a tree only when value() is first called. Storing a
// document copies its text; reading one from the memory store parses nothing.
//
// A JsonDocument is immutable and cheap to copy (copies share one text and one
// parsed tree). Safe to share between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "aicache/status.h"

namespace aicache {

struct JsonLimits {
  // Deepest nesting of arrays and objects accepted by parse(). Deeper input
  // is refused rather than risking the stack of whoever walks the tree.
  std::size_t max_depth = 512;
  // Longest text accepted by parse(). Default: 64 MiB.
  std::size_t max_bytes = 64u << 20;
};

class JsonDocument {
 public:
  // The JSON value null.
  JsonDocument();

  // Serialises `value` once (compact, UTF-8) and keeps the tree as well.
  explicit JsonDocument(const nlohmann::json& value);
  explicit JsonDocument(nlohmann::json&& value);

  // Checks that `text` is one complete JSON value within `limits`. Errors are
  // kInvalidArgument with the byte offset of the problem.
  static Result<JsonDocument> parse(std::string_view text, JsonLimits limits = {});

  // Convenience constructors for scalar documents.
  static JsonDocument string(std::string_view s);
  static JsonDocument integer(std::int64_t n);

  // Wraps text that is already known to be valid JSON (written by this
  // library through a validating path). Not checked again. If the promise is
  // broken, value() yields a discarded value (is_discarded() is true).
  static JsonDocument from_trusted_text(std::string text);

  // The serialized form, exactly as stored.
  std::string_view text() const noexcept;

  // The parsed tree; parsed on first call (thread-safe), then shared.
  const nlohmann::json& value() const;

  friend bool operator==(const JsonDocument& a, const JsonDocument& b) noexcept {
    return a.text() == b.text();
  }

 private:
  struct Impl;
  explicit JsonDocument(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace aicache
