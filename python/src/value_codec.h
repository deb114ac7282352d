// A private, compact form of plain Python values, for the Django backend on
// the in-process memory store (aicache/django.py).
//
// Why not pickle there: both Django backends of the memory store (LocMemCache
// and AicacheCache) pickle every value so that each get hands out a fresh copy,
// and pickle's UTF-8 encoding and decoding of non-ASCII text is most of the
// cost. On the memory store no other process reads the bytes, so they need not
// be pickle's (on Redis they must: django-redis reads them). This form keeps a
// str in CPython's own representation (its kind, 1, 2 or 4 bytes a code
// point, and the raw code units), so packing is a copy and unpacking a scan
// for the widest character and a copy, with no UTF-8 in between.
//
//   aicache._aicache._pack(obj) -> bytes | None
//   aicache._aicache._unpack(data: bytes) -> obj
//   aicache._aicache._PACKED_TAG: bytes, the first byte of every packed value
//
// _pack takes exact types only (`type(o) is dict`, not a subclass such as
// OrderedDict or defaultdict, whose type pickle keeps): dict (keys any of
// these types, insertion order kept), list, tuple, str, int within 64 bits,
// float (NaN and infinities included, bit for bit), bool, None, bytes. It
// answers None, and the caller pickles instead, for anything else: another
// type, a bigger int, nesting deeper than kMaxPackedDepth, or a dict, list or
// tuple met twice (a shared reference or a cycle: pickle keeps the identity,
// this form would not). A str object met twice is written once and comes
// back as one object, as pickle's memo gives it; a bytes object met twice
// comes back as two equal ones (immutable, so only `is` tells).
//
// The first byte (0xAC) is neither pickle's PROTO opcode (0x80), nor an ASCII
// digit, sign or space (an int stored as its digits), nor any byte JSON text
// or an older pickle protocol starts with; the second is the form's version.
//
// _unpack treats its input as hostile: every length and count is checked
// against the bytes left before anything is read or allocated, nesting is
// limited, and anything malformed raises ValueError (never a crash or a read
// past the end).
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string_view>

namespace aicache::python {

inline constexpr unsigned char kPackedTag = 0xAC;
inline constexpr unsigned char kPackedVersion = 1;
inline constexpr int kMaxPackedDepth = 100;

// Adds _pack, _unpack and _PACKED_TAG to the module.
void add_value_codec(pybind11::module_& m);

// The same for C++ callers (the Store's fused paths, so that a packed value
// goes to and from the store without a bytes object in between). With the
// GIL held.
//
// `value` packed into this thread's buffer: valid until the next
// pack_value() on this thread. nullopt: not packable (pickle it). Throws
// std::bad_alloc only.
std::optional<std::string_view> pack_value(PyObject* value);
// Frees this thread's buffer when a big value grew it (after the bytes
// pack_value() gave are used).
void trim_pack_buffer();

inline bool is_packed(std::string_view data) noexcept {
  return !data.empty() && static_cast<unsigned char>(data.front()) == kPackedTag;
}

// The value in `data`; malformed data raises ValueError (through
// pybind11::error_already_set).
pybind11::object unpack_value(std::string_view data);

}  // namespace aicache::python
