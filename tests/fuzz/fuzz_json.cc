// Fuzz target: JsonDocument::parse (aicache/json.h), the gate every value
// passes before it is stored.
//
// Properties, beyond "no crash, no stack exhaustion":
//  - an accepted text keeps its bytes (text() is the input) and its tree
//    parses (value() is never discarded);
//  - parse, serialise, parse gives the same tree, and the serialised text is
//    a fixed point (serialising again gives the same bytes);
//  - the depth limit is monotonic: what a small limit accepts, the default
//    accepts too, and the default is at least as permissive as the service's
//    limit of 128.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "aicache/json.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto shallow = aicache::JsonDocument::parse(text, {.max_depth = 4});
  auto service = aicache::JsonDocument::parse(text, {.max_depth = 128});
  auto doc = aicache::JsonDocument::parse(text);
  check(!shallow || service);
  check(!service || doc);
  if (!doc) {
    check(doc.error().code == aicache::ErrorCode::kInvalidArgument);
    check(!doc.error().message.empty());
    return 0;
  }

  check(doc->text() == text);
  const nlohmann::json& tree = doc->value();
  check(!tree.is_discarded());

  const aicache::JsonDocument rebuilt(tree);
  auto reparsed = aicache::JsonDocument::parse(rebuilt.text());
  check(reparsed.has_value());
  check(reparsed->value() == tree);
  check(aicache::JsonDocument(reparsed->value()).text() == rebuilt.text());
  return 0;
}
