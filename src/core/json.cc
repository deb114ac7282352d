#include "aicache/json.h"

#include <fmt/format.h>

#include <mutex>
#include <nlohmann/json.hpp>

namespace aicache {

// The text is the identity of a document; the tree is a cache of it. Both are
// immutable once `once` has run, which is what makes sharing safe.
struct JsonDocument::Impl {
  std::string text;
  mutable std::once_flag once;
  mutable nlohmann::json tree;

  explicit Impl(std::string t) : text(std::move(t)) {}
  Impl(std::string t, nlohmann::json parsed) : text(std::move(t)), tree(std::move(parsed)) {
    std::call_once(once, [] {});
  }
};

namespace {

std::string dump_compact(const nlohmann::json& value) {
  // Invalid UTF-8 inside strings is replaced by U+FFFD instead of throwing: a
  // constructor cannot report an error, and a tree built in C++ is the
  // caller's own data.
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Accepts exactly one JSON value, refusing nesting beyond a limit; builds no
// tree, so validation is cheap and bounded in memory.
class LimitedValidator final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit LimitedValidator(std::size_t max_depth) : max_depth_(max_depth) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return enter(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return leave(); }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override { return leave(); }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    std::string_view what = ex.what();
    // "[json.exception.parse_error.101] parse error at ..." -> "parse error at ..."
    if (auto pos = what.find("] "); pos != std::string_view::npos) what.remove_prefix(pos + 2);
    error_ = fmt::format("invalid JSON at byte {}: {}", position, what);
    return false;
  }

  const std::string& error() const noexcept { return error_; }

 private:
  bool enter() {
    if (++depth_ > max_depth_) {
      error_ = fmt::format("JSON nested deeper than {} levels", max_depth_);
      return false;
    }
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }

  std::size_t max_depth_;
  std::size_t depth_ = 0;
  std::string error_;
};

}  // namespace

JsonDocument::JsonDocument() {
  // Every null document shares one Impl: default construction allocates nothing.
  static const auto null_impl = std::make_shared<const Impl>("null", nullptr);
  impl_ = null_impl;
}

JsonDocument::JsonDocument(const nlohmann::json& value)
    : impl_(std::make_shared<const Impl>(dump_compact(value), value)) {}

JsonDocument::JsonDocument(nlohmann::json&& value)
    : impl_(std::make_shared<const Impl>(dump_compact(value), std::move(value))) {}

Result<JsonDocument> JsonDocument::parse(std::string_view text, JsonLimits limits) {
  if (text.size() > limits.max_bytes) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("JSON text of {} bytes is over the limit of {} bytes",
                                  text.size(), limits.max_bytes));
  }
  LimitedValidator validator(limits.max_depth);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text, &validator);
  } catch (const std::exception& e) {  // defensive: the SAX parser reports via parse_error
    return make_error(ErrorCode::kInvalidArgument, fmt::format("invalid JSON: {}", e.what()));
  }
  if (!ok) {
    return make_error(ErrorCode::kInvalidArgument,
                      validator.error().empty() ? std::string("invalid JSON") : validator.error());
  }
  return JsonDocument(std::make_shared<const Impl>(std::string(text)));
}

JsonDocument JsonDocument::string(std::string_view s) {
  return JsonDocument(nlohmann::json(std::string(s)));
}

JsonDocument JsonDocument::integer(std::int64_t n) { return JsonDocument(nlohmann::json(n)); }

JsonDocument JsonDocument::from_trusted_text(std::string text) {
  return JsonDocument(std::make_shared<const Impl>(std::move(text)));
}

std::string_view JsonDocument::text() const noexcept { return impl_->text; }

const nlohmann::json& JsonDocument::value() const {
  std::call_once(impl_->once, [impl = impl_.get()] {
    impl->tree = nlohmann::json::parse(impl->text, nullptr, /*allow_exceptions=*/false);
  });
  return impl_->tree;
}

}  // namespace aicache
