// Python objects <-> JSON, for the values AssistantCache stores.
//
// JSON types only, as json.dumps takes them without a custom encoder: None,
// bool, int (within 64 bits), float (finite), str, list, tuple, dict with str
// (or int) keys. Anything else raises TypeError naming the type, as
// json.dumps does ("Object of type set is not JSON serializable").
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <string>

namespace aicache::python {

// Raises TypeError, ValueError (NaN, infinity, nesting deeper than 512) or
// OverflowError (an int beyond 64 bits) through pybind11.
nlohmann::json to_json(pybind11::handle value);

pybind11::object from_json(const nlohmann::json& value);

// The same check and errors as to_json(), straight to compact UTF-8 JSON text
// (dict order kept, integers as digits, floats as Python's repr): valid JSON
// by construction, so a JsonDocument may wrap it without parsing it again.
std::string to_json_text(pybind11::handle value);

// JSON text (valid: from the store, through AssistantCache) as Python
// objects. Large texts go through the json module's C parser, several times
// faster than building a tree first.
pybind11::object from_json_text(std::string_view text);

// An id of a typed entry: a str, or an int as its decimal digits (the seed's
// code passes both). Anything else raises TypeError naming `what`.
std::string id_text(pybind11::handle id, const char* what);

}  // namespace aicache::python
