#include "value_codec.h"

#include <Python.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aicache::python {
namespace {

// The form, after the tag and version bytes: one value, then nothing.
//   'N' 'T' 'F'                        None, True, False
//   'i' zigzag varint                  int64
//   'f' 8 bytes                        float: its IEEE-754 bits, little-endian
//   'a' 'u' 'U' n, zero padding, data  str of kind 1, 2 or 4: n code units, aligned
//                                      to the kind from the start of the form
//   'b' n, data                        bytes
//   'l' 't' n, n values                list, tuple
//   'd' n, n (key, value)              dict, in insertion order
//   'r' i                              the i-th str written in full, again
// n and i are LEB128 varints below 2^32 (one byte below 128): the form stays
// smaller than pickle's, which counts against the memory store's size limit.
// A str object met again (a dict key repeated across records, a constant
// such as "user") is written as a reference to its first copy, as pickle's
// memo does, and read back as one object: one copy, and for a key one hash.
// The writer finds repeats by the object's address; the first kMaxStrings
// strings written in full can be referred to.
enum Tag : unsigned char {
  kNone = 'N',
  kTrue = 'T',
  kFalse = 'F',
  kInt = 'i',
  kFloat = 'f',
  kStr1 = 'a',
  kStr2 = 'u',
  kStr4 = 'U',
  kBytes = 'b',
  kList = 'l',
  kTuple = 't',
  kDict = 'd',
  kStrRef = 'r',
};

constexpr std::size_t kMaxStrings = 4096;
constexpr std::size_t kHeader = 2;
constexpr std::uint32_t kMaxCount = std::numeric_limits<std::uint32_t>::max();

// --- pack ------------------------------------------------------------------

// Objects met so far, by address, each with a number: the containers met
// (to find shared ones and cycles) and the strings written in full (to refer
// to them again). An open-addressing table kept per thread from one value to
// the next: a slot counts only when it has this value's epoch, so starting
// a value clears nothing (clearing even 64 slots cost more than packing a
// short string).
class AddressMap {
 public:
  // Empty again, for the next value.
  void reset() {
    count_ = 0;
    if (slots_.size() > kInitialSlots * 64) {  // a big value's table goes
      slots_.assign(kInitialSlots, Slot{});
    }
    if (++epoch_ == 0) {  // after 2^32 values: the old stamps could match again
      std::fill(slots_.begin(), slots_.end(), Slot{});
      epoch_ = 1;
    }
  }

  // The number `p` has, or nullptr.
  const std::uint32_t* find(PyObject* p) const {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = slot(p, mask);; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.epoch != epoch_) return nullptr;
      if (s.key == p) return &s.number;
    }
  }

  // nullptr when `p` is new (now with `number`), else the number it had.
  const std::uint32_t* insert(PyObject* p, std::uint32_t number) {
    if (4 * (count_ + 1) > 3 * slots_.size()) grow();
    return place(slots_, {p, number, epoch_});
  }

 private:
  static constexpr std::size_t kInitialSlots = 64;

  struct Slot {
    PyObject* key;
    std::uint32_t number;
    std::uint32_t epoch;  // 0: never used
  };

  static std::size_t slot(PyObject* p, std::size_t mask) {
    // Objects are 16-byte aligned; Fibonacci hashing spreads the rest.
    return static_cast<std::size_t>(
               ((reinterpret_cast<std::uintptr_t>(p) >> 4) * 0x9E3779B97F4A7C15ull) >> 40) &
           mask;
  }

  const std::uint32_t* place(std::vector<Slot>& slots, Slot entry) {
    const std::size_t mask = slots.size() - 1;
    for (std::size_t i = slot(entry.key, mask);; i = (i + 1) & mask) {
      Slot& s = slots[i];
      if (s.epoch != epoch_) {
        s = entry;
        ++count_;
        return nullptr;
      }
      if (s.key == entry.key) return &s.number;
    }
  }

  void grow() {
    std::vector<Slot> bigger(2 * slots_.size(), Slot{});
    count_ = 0;
    for (const Slot& s : slots_) {
      if (s.epoch == epoch_) place(bigger, s);
    }
    slots_ = std::move(bigger);
  }

  std::vector<Slot> slots_ = std::vector<Slot>(kInitialSlots, Slot{});
  std::uint32_t epoch_ = 0;
  std::size_t count_ = 0;
};

// What a thread packs with, kept from one value to the next.
struct PackState {
  std::string buffer;
  AddressMap seen;     // the containers met
  AddressMap written;  // the strings written in full, numbered in order
};

// Writes into `buffer` used as raw room: its size is the room, pos_ the end
// of what is written, so that each item checks the room once.
//
// Nothing here runs Python code (exact types only, no __hash__, __eq__ or
// __index__), so the graph cannot change under the walk and the borrowed
// pointers stay valid.
class Packer {
 public:
  explicit Packer(PackState& state)
      : buf_(state.buffer), seen_(state.seen), written_(state.written) {
    seen_.reset();
    written_.reset();
    unsigned char* p = room(kHeader);
    p[0] = kPackedTag;
    p[1] = kPackedVersion;
    pos_ = kHeader;
  }

  std::size_t size() const { return pos_; }

  // False: not packable (the caller pickles). Throws only std::bad_alloc.
  bool value(PyObject* o, int depth) {
    PyTypeObject* type = Py_TYPE(o);
    if (type == &PyUnicode_Type) return str(o);
    if (type == &PyDict_Type) return dict(o, depth);
    if (type == &PyLong_Type) {
      int overflow = 0;
      const long long n = PyLong_AsLongLongAndOverflow(o, &overflow);
      if (overflow != 0) return false;
      // Zigzag: small magnitudes of either sign in few bytes.
      const auto u = static_cast<std::uint64_t>(n);
      end(head(kInt, (u << 1) ^ (n < 0 ? ~std::uint64_t{0} : 0), 0));
      return true;
    }
    if (o == Py_None || o == Py_True || o == Py_False) {
      *room(1) = o == Py_None ? kNone : o == Py_True ? kTrue : kFalse;
      ++pos_;
      return true;
    }
    if (type == &PyFloat_Type) {
      const double d = PyFloat_AS_DOUBLE(o);
      std::uint64_t bits = 0;
      std::memcpy(&bits, &d, sizeof bits);
      unsigned char* p = room(1 + sizeof bits);
      *p++ = kFloat;
      for (std::size_t i = 0; i < sizeof bits; ++i)
        *p++ = static_cast<unsigned char>(bits >> (8 * i));
      end(p);
      return true;
    }
    if (type == &PyList_Type) {
      return sequence(o, kList, PyList_GET_SIZE(o), &list_item, depth);
    }
    if (type == &PyTuple_Type) {
      return sequence(o, kTuple, PyTuple_GET_SIZE(o), &tuple_item, depth);
    }
    if (type == &PyBytes_Type) {
      const auto n = static_cast<std::size_t>(PyBytes_GET_SIZE(o));
      if (n > kMaxCount) return false;
      unsigned char* p = head(kBytes, n, n);
      std::memcpy(p, PyBytes_AS_STRING(o), n);
      end(p + n);
      return true;
    }
    return false;
  }

 private:
  static PyObject* list_item(PyObject* o, Py_ssize_t i) { return PyList_GET_ITEM(o, i); }
  static PyObject* tuple_item(PyObject* o, Py_ssize_t i) { return PyTuple_GET_ITEM(o, i); }

  unsigned char* base() { return reinterpret_cast<unsigned char*>(buf_.data()); }

  // Room for n more bytes after what is written (valid until the next call).
  unsigned char* room(std::size_t n) {
    if (n > buf_.size() - pos_) buf_.resize(std::max(buf_.size() * 2, pos_ + n));
    return base() + pos_;
  }

  // Writes a tag and its varint, with room for `more` bytes after them.
  unsigned char* head(Tag t, std::uint64_t n, std::size_t more) {
    unsigned char* p = room(1 + 10 + more);
    *p++ = t;
    while (n >= 0x80) {
      *p++ = static_cast<unsigned char>(n | 0x80);
      n >>= 7;
    }
    *p++ = static_cast<unsigned char>(n);
    return p;
  }

  void end(unsigned char* p) { pos_ = static_cast<std::size_t>(p - base()); }

  bool str(PyObject* o) {
    if (strings_ < kMaxStrings) {
      if (const std::uint32_t* number = written_.insert(o, strings_)) {
        end(head(kStrRef, *number, 0));
        return true;
      }
    } else if (const std::uint32_t* number = written_.find(o)) {
      end(head(kStrRef, *number, 0));
      return true;
    }
    ++strings_;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(o) < 0) {  // a legacy str that cannot be made ready
      PyErr_Clear();
      return false;
    }
#endif
    const auto n = static_cast<std::size_t>(PyUnicode_GET_LENGTH(o));
    if (n > kMaxCount) return false;
    const int kind = PyUnicode_KIND(o);
    const auto width = static_cast<std::size_t>(kind);
    const std::size_t bytes = n * width;
    unsigned char* p = head(kind == PyUnicode_1BYTE_KIND   ? kStr1
                            : kind == PyUnicode_2BYTE_KIND ? kStr2
                                                           : kStr4,
                            n, 3 + bytes);
    // Aligned to the kind from the start, so that a reader of an aligned
    // buffer (a bytes object's) takes the code units in place.
    // (width is 1, 2 or 4: a mask, not a division, which would cost more
    // than the copy of a short string)
    const std::size_t pad = (0 - static_cast<std::size_t>(p - base())) & (width - 1);
    std::memset(p, 0, pad);
    p += pad;
    std::memcpy(p, PyUnicode_DATA(o), bytes);
    end(p + bytes);
    return true;
  }

  bool enter(PyObject* o, int depth) {
    return depth < kMaxPackedDepth && seen_.insert(o, 0) == nullptr;
  }

  bool dict(PyObject* o, int depth) {
    const auto n = static_cast<std::size_t>(PyDict_Size(o));  // (the macro casts old-style)
    if (!enter(o, depth) || n > kMaxCount) return false;
    end(head(kDict, n, 0));
    Py_ssize_t pos = 0;
    PyObject* k = nullptr;
    PyObject* v = nullptr;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (!value(k, depth + 1) || !value(v, depth + 1)) return false;
    }
    return true;
  }

  bool sequence(PyObject* o, Tag t, Py_ssize_t n, PyObject* (*item)(PyObject*, Py_ssize_t),
                int depth) {
    // The empty tuple is one shared object, and comes back as that object.
    if (!(t == kTuple && n == 0) && !enter(o, depth)) return false;
    if (static_cast<std::size_t>(n) > kMaxCount) return false;
    end(head(t, static_cast<std::size_t>(n), 0));
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!value(item(o, i), depth + 1)) return false;
    }
    return true;
  }

  std::string& buf_;
  std::size_t pos_ = 0;
  AddressMap& seen_;           // the containers met
  AddressMap& written_;        // the strings written in full, numbered in order
  std::uint32_t strings_ = 0;  // how many were written in full
};

// One per thread, reused: most values are written without growing anything.
thread_local PackState pack_state;

// --- unpack ----------------------------------------------------------------

struct Invalid {
  const char* what;
  std::size_t at;
};
struct PythonError {};  // a CPython call failed and set the exception

// An owned reference.
class Ref {
 public:
  explicit Ref(PyObject* p) : p_(p) {
    if (p_ == nullptr) throw PythonError{};
  }
  Ref(Ref&& other) noexcept : p_(other.p_) { other.p_ = nullptr; }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  Ref& operator=(Ref&&) = delete;
  ~Ref() { Py_XDECREF(p_); }
  PyObject* get() const { return p_; }
  PyObject* release() {
    PyObject* p = p_;
    p_ = nullptr;
    return p;
  }

 private:
  PyObject* p_;
};

class Unpacker {
 public:
  Unpacker(const unsigned char* data, std::size_t size) : data_(data), size_(size) {}

  Ref all() {
    if (size_ < kHeader || data_[0] != kPackedTag) throw Invalid{"not a packed value", 0};
    if (data_[1] != kPackedVersion) throw Invalid{"unknown version", 1};
    pos_ = kHeader;
    Ref v = value(0);
    if (pos_ != size_) throw Invalid{"bytes after the value", pos_};
    return v;
  }

 private:
  std::size_t left() const { return size_ - pos_; }

  void need(std::size_t n) const {
    if (n > left()) throw Invalid{"truncated", pos_};
  }

  template <class U>
  U fixed() {
    need(sizeof(U));
    U n = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) n |= static_cast<U>(data_[pos_ + i]) << (8 * i);
    pos_ += sizeof(U);
    return n;
  }

  std::uint64_t varint() {
    const std::size_t at = pos_;
    std::uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
      need(1);
      const unsigned char byte = data_[pos_++];
      if (shift == 63 && byte > 1) throw Invalid{"varint beyond 64 bits", at};
      n |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return n;
    }
  }

  // A count of items, each at least `min_size` bytes: never more than the
  // bytes left can hold, so a forged count allocates nothing.
  std::size_t count(std::size_t min_size) {
    const std::size_t at = pos_;
    const std::uint64_t n = varint();
    if (n > left() / min_size) throw Invalid{"count beyond the data", at};
    return static_cast<std::size_t>(n);
  }

  Ref value(int depth) {
    need(1);
    const std::size_t at = pos_;
    const unsigned char t = data_[pos_++];
    switch (t) {
      case kNone:
        return Ref(Py_NewRef(Py_None));
      case kTrue:
        return Ref(Py_NewRef(Py_True));
      case kFalse:
        return Ref(Py_NewRef(Py_False));
      case kInt: {
        const std::uint64_t u = varint();
        const std::uint64_t n = (u >> 1) ^ (~(u & 1) + 1);  // zigzag
        return Ref(PyLong_FromLongLong(static_cast<long long>(n)));
      }
      case kFloat: {
        const std::uint64_t bits = fixed<std::uint64_t>();
        double d = 0;
        std::memcpy(&d, &bits, sizeof d);
        return Ref(PyFloat_FromDouble(d));
      }
      case kStr1:
        return str(PyUnicode_1BYTE_KIND);
      case kStr2:
        return str(PyUnicode_2BYTE_KIND);
      case kStr4:
        return str(PyUnicode_4BYTE_KIND);
      case kBytes: {
        const std::size_t n = count(1);
        Ref b(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(data_ + pos_),
                                        static_cast<Py_ssize_t>(n)));
        pos_ += n;
        return b;
      }
      case kList:
      case kTuple: {
        enter(depth, at);
        const std::size_t n = count(1);
        const bool list = t == kList;
        Ref seq(list ? PyList_New(static_cast<Py_ssize_t>(n))
                     : PyTuple_New(static_cast<Py_ssize_t>(n)));
        // A half-filled list or tuple holds NULLs, which its deallocation skips.
        for (std::size_t i = 0; i < n; ++i) {
          PyObject* item = this->item(depth + 1).release();
          if (list) {
            PyList_SET_ITEM(seq.get(), static_cast<Py_ssize_t>(i), item);
          } else {
            PyTuple_SET_ITEM(seq.get(), static_cast<Py_ssize_t>(i), item);
          }
        }
        return seq;
      }
      case kDict: {
        enter(depth, at);
        const std::size_t n = count(2);
        Ref d(PyDict_New());
        for (std::size_t i = 0; i < n; ++i) {
          Ref k = item(depth + 1);
          Ref v = item(depth + 1);
          if (PyDict_SetItem(d.get(), k.get(), v.get()) < 0) throw PythonError{};  // unhashable
        }
        return d;
      }
      case kStrRef:
        return str_ref(at);
      default:
        throw Invalid{"unknown tag", at};
    }
  }

  // An item of a container: a str met again (as every record's keys are)
  // without the switch in value(), whose indirect jump mispredicts more
  // (11 % off unpacking the conversation; testing more tags here did not
  // help).
  Ref item(int depth) {
    if (pos_ < size_ && data_[pos_] == kStrRef) {
      const std::size_t at = pos_++;
      return str_ref(at);
    }
    return value(depth);
  }

  Ref str_ref(std::size_t at) {
    const std::uint64_t i = varint();
    if (i >= strings_.size()) throw Invalid{"reference to no str", at};
    return Ref(Py_NewRef(strings_[i].get()));
  }

  void enter(int depth, std::size_t at) const {
    if (depth >= kMaxPackedDepth) throw Invalid{"nested too deep", at};
  }

  Ref str(int kind) {
    const std::size_t n = count(1);  // checked again below, with the width
    const std::size_t width = static_cast<std::size_t>(kind);
    const std::size_t pad = (0 - pos_) & (width - 1);  // width is 1, 2 or 4
    need(pad);
    for (std::size_t i = 0; i < pad; ++i) {
      if (data_[pos_ + i] != 0) throw Invalid{"padding not zero", pos_ + i};
    }
    pos_ += pad;
    if (n > left() / width) throw Invalid{"truncated", pos_};
    const unsigned char* p = data_ + pos_;
    const std::size_t bytes = n * width;
    pos_ += bytes;
    Ref s = text(kind, p, n, bytes, pos_ - bytes);
    if (strings_.size() < kMaxStrings) {
      if (strings_.empty()) strings_.reserve(64);
      strings_.emplace_back(Py_NewRef(s.get()));
    }
    return s;
  }

  static Ref text(int kind, const unsigned char* p, std::size_t n, std::size_t bytes,
                  std::size_t at) {
    if (kind == PyUnicode_1BYTE_KIND) {
      return Ref(PyUnicode_FromKindAndData(kind, p, static_cast<Py_ssize_t>(n)));
    }
    // CPython reads the code units as Py_UCS2 or Py_UCS4: aligned ones in
    // place (a bytes object's data is aligned, and the form aligns them to
    // its start), anything else through an aligned copy.
    std::vector<Py_UCS4> copy;
    const void* units = p;
    if (reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(kind) != 0) {
      copy.resize((bytes + sizeof(Py_UCS4) - 1) / sizeof(Py_UCS4));
      std::memcpy(copy.data(), p, bytes);
      units = copy.data();
    }
    if (kind == PyUnicode_4BYTE_KIND) {
      const auto* u = static_cast<const Py_UCS4*>(units);
      for (std::size_t i = 0; i < n; ++i) {
        if (u[i] > 0x10FFFF) throw Invalid{"code point beyond U+10FFFF", at + 4 * i};
      }
    }
    return Ref(PyUnicode_FromKindAndData(kind, units, static_cast<Py_ssize_t>(n)));
  }

  const unsigned char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::vector<Ref> strings_;  // the first kMaxStrings written in full
};

// A new reference, or nullptr with the Python exception set.
PyObject* unpack_raw(std::string_view data) {
  try {
    return Unpacker(reinterpret_cast<const unsigned char*>(data.data()), data.size())
        .all()
        .release();
  } catch (const Invalid& e) {
    PyErr_Format(PyExc_ValueError, "aicache: invalid packed value: %s (byte %zu)", e.what, e.at);
  } catch (const PythonError&) {
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  }
  return nullptr;
}

PyObject* pack_py(PyObject* /*module*/, PyObject* value) {
  try {
    const std::optional<std::string_view> packed = pack_value(value);
    PyObject* result =
        packed ? PyBytes_FromStringAndSize(packed->data(), static_cast<Py_ssize_t>(packed->size()))
               : Py_NewRef(Py_None);
    trim_pack_buffer();
    return result;
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  }
}

PyObject* unpack_py(PyObject* /*module*/, PyObject* data) {
  if (!PyBytes_Check(data)) {
    PyErr_Format(PyExc_TypeError, "_unpack takes bytes, not %.100s", Py_TYPE(data)->tp_name);
    return nullptr;
  }
  return unpack_raw({PyBytes_AS_STRING(data), static_cast<std::size_t>(PyBytes_GET_SIZE(data))});
}

PyMethodDef pack_def = {
    "_pack", &pack_py, METH_O,
    "_pack(obj) -> bytes | None: obj in aicache's private compact form (the Django backend's "
    "on the memory store), or None when it is not a plain value that form keeps exactly "
    "(then pickle it)."};
PyMethodDef unpack_def = {
    "_unpack", &unpack_py, METH_O,
    "_unpack(data: bytes) -> object: the value _pack wrote. Malformed data raises ValueError."};

}  // namespace

std::optional<std::string_view> pack_value(PyObject* value) {
  PackState& state = pack_state;
  Packer packer(state);
  if (!packer.value(value, 0)) return std::nullopt;
  return std::string_view(state.buffer.data(), packer.size());
}

void trim_pack_buffer() {
  std::string& buffer = pack_state.buffer;
  if (buffer.size() > (std::size_t{1} << 20)) std::string().swap(buffer);
}

pybind11::object unpack_value(std::string_view data) {
  PyObject* value = unpack_raw(data);
  if (value == nullptr) throw pybind11::error_already_set();
  return pybind11::reinterpret_steal<pybind11::object>(value);
}

void add_value_codec(pybind11::module_& m) {
  for (PyMethodDef* def : {&pack_def, &unpack_def}) {
    m.add_object(def->ml_name,
                 pybind11::reinterpret_steal<pybind11::object>(PyCFunction_New(def, nullptr)));
  }
  const char tag = static_cast<char>(kPackedTag);
  m.attr("_PACKED_TAG") = pybind11::bytes(&tag, 1);
}

}  // namespace aicache::python
