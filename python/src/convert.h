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

// An id of a typed entry: a str, or an int as its decimal digits (the seed's
// code passes both). Anything else raises TypeError naming `what`.
std::string id_text(pybind11::handle id, const char* what);

}  // namespace aicache::python
