#include "convert.h"

#include <Python.h>

#include <cmath>
#include <string>

namespace py = pybind11;

namespace aicache::python {
namespace {

constexpr int kMaxDepth = 512;

std::string type_name(py::handle value) { return Py_TYPE(value.ptr())->tp_name; }

std::string utf8(py::handle text) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
  if (data == nullptr) throw py::error_already_set();  // lone surrogates
  return std::string(data, static_cast<std::size_t>(size));
}

nlohmann::json convert(py::handle value, int depth) {
  if (depth > kMaxDepth) throw py::value_error("JSON value nested deeper than 512 levels");
  PyObject* o = value.ptr();
  if (o == Py_None) return nullptr;
  if (PyBool_Check(o)) return o == Py_True;
  if (PyLong_Check(o)) {
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
      return static_cast<std::int64_t>(n);
    }
    if (overflow > 0) {
      const unsigned long long u = PyLong_AsUnsignedLongLong(o);
      if (!PyErr_Occurred()) return static_cast<std::uint64_t>(u);
      PyErr_Clear();
    }
    PyErr_SetString(PyExc_OverflowError, "int too large for a JSON value (64 bits)");
    throw py::error_already_set();
  }
  if (PyFloat_Check(o)) {
    const double d = PyFloat_AS_DOUBLE(o);
    if (!std::isfinite(d)) throw py::value_error("Out of range float values are not JSON compliant");
    return d;
  }
  if (PyUnicode_Check(o)) return utf8(value);
  if (PyList_Check(o) || PyTuple_Check(o)) {
    nlohmann::json array = nlohmann::json::array();
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    array.get_ref<nlohmann::json::array_t&>().reserve(static_cast<std::size_t>(n));
    PyObject** items = PySequence_Fast_ITEMS(o);
    for (Py_ssize_t i = 0; i < n; ++i) array.push_back(convert(items[i], depth + 1));
    return array;
  }
  if (PyDict_Check(o)) {
    nlohmann::json object = nlohmann::json::object();
    PyObject* key = nullptr;
    PyObject* item = nullptr;
    Py_ssize_t pos = 0;
    while (PyDict_Next(o, &pos, &key, &item)) {
      std::string name;
      if (PyUnicode_Check(key)) {
        name = utf8(key);
      } else if (PyLong_Check(key) && !PyBool_Check(key)) {
        name = utf8(py::str(key));  // json.dumps turns int keys into their digits
      } else {
        throw py::type_error("keys must be str or int, not " + type_name(key));
      }
      object[std::move(name)] = convert(item, depth + 1);
    }
    return object;
  }
  throw py::type_error("Object of type " + type_name(value) + " is not JSON serializable");
}

void append_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s, run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
    }
  }
  out.append(s, run, s.size() - run);
  out.push_back('"');
}

void write(std::string& out, py::handle value, int depth) {
  if (depth > kMaxDepth) throw py::value_error("JSON value nested deeper than 512 levels");
  PyObject* o = value.ptr();
  if (o == Py_None) {
    out += "null";
  } else if (PyBool_Check(o)) {
    out += o == Py_True ? "true" : "false";
  } else if (PyLong_Check(o)) {
    const nlohmann::json n = convert(value, depth);  // the 64-bit check, one place
    out += n.dump();
  } else if (PyFloat_Check(o)) {
    const double d = PyFloat_AS_DOUBLE(o);
    if (!std::isfinite(d)) throw py::value_error("Out of range float values are not JSON compliant");
    char* repr = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, nullptr);
    if (repr == nullptr) throw py::error_already_set();
    out += repr;
    PyMem_Free(repr);
  } else if (PyUnicode_Check(o)) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(o, &size);
    if (data == nullptr) throw py::error_already_set();
    append_string(out, std::string_view(data, static_cast<std::size_t>(size)));
  } else if (PyList_Check(o) || PyTuple_Check(o)) {
    out.push_back('[');
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** items = PySequence_Fast_ITEMS(o);
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (i > 0) out.push_back(',');
      write(out, items[i], depth + 1);
    }
    out.push_back(']');
  } else if (PyDict_Check(o)) {
    out.push_back('{');
    PyObject* key = nullptr;
    PyObject* item = nullptr;
    Py_ssize_t pos = 0;
    bool first = true;
    while (PyDict_Next(o, &pos, &key, &item)) {
      if (!first) out.push_back(',');
      first = false;
      if (PyUnicode_Check(key)) {
        append_string(out, utf8(key));
      } else if (PyLong_Check(key) && !PyBool_Check(key)) {
        append_string(out, utf8(py::str(key)));
      } else {
        throw py::type_error("keys must be str or int, not " + type_name(key));
      }
      out.push_back(':');
      write(out, item, depth + 1);
    }
    out.push_back('}');
  } else {
    throw py::type_error("Object of type " + type_name(value) + " is not JSON serializable");
  }
}

// Below this size building the tree in C++ is cheaper than calling json.loads.
constexpr std::size_t kJsonModuleThreshold = 256;

}  // namespace

nlohmann::json to_json(py::handle value) { return convert(value, 0); }

std::string to_json_text(py::handle value) {
  std::string out;
  write(out, value, 0);
  return out;
}

py::object from_json_text(std::string_view text) {
  if (text.size() < kJsonModuleThreshold) {
    return from_json(nlohmann::json::parse(text.begin(), text.end()));
  }
  // Imported once; never released (module state lives as long as the process).
  static PyObject* loads = [] {
    py::object f = py::module_::import("json").attr("loads");
    return f.release().ptr();
  }();
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "strict");
  if (s == nullptr) throw py::error_already_set();
  py::object str = py::reinterpret_steal<py::object>(s);
  PyObject* result = PyObject_CallOneArg(loads, str.ptr());
  if (result == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(result);
}

py::object from_json(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(value.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(value.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(value.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(value.get<double>());
    case nlohmann::json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      PyObject* text = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
      if (text == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(text);
    }
    case nlohmann::json::value_t::array: {
      py::list list(value.size());
      std::size_t i = 0;
      for (const auto& item : value) list[i++] = from_json(item);
      return list;
    }
    case nlohmann::json::value_t::object: {
      py::dict dict;
      for (const auto& [k, v] : value.items()) dict[py::str(k)] = from_json(v);
      return dict;
    }
    default: return py::none();  // binary / discarded: never produced by parse()
  }
}

std::string id_text(py::handle id, const char* what) {
  if (PyUnicode_Check(id.ptr())) return utf8(id);
  if (PyLong_Check(id.ptr()) && !PyBool_Check(id.ptr())) return utf8(py::str(id));
  throw py::type_error(std::string(what) + " must be str or int, not " + type_name(id));
}

}  // namespace aicache::python
