// aicache._aicache: the C++ core for Python (pybind11).
//
// Three classes, each a handle on C++ objects it can open again:
//   AssistantCache  the typed cache (AssistantCache over the memory or Redis store)
//   TokenManager    the token manager, its cache and its background refresher
//   Store           the byte-level store, under the Django backend (aicache/django.py)
//
// The GIL. Calls that may wait on a socket (every call on a Redis store, every
// token manager call) release it for the C++ part; the Python objects are
// converted before and after, with the GIL held. Calls on the memory store
// keep it: they take well under a microsecond, less than releasing and taking
// back the GIL would cost, and never block for long (the store's shard locks
// are held for a table operation only).
//
// Fork safety. gunicorn and uwsgi fork workers after the application is
// imported, so a child inherits these handles with the parent's Redis
// connections, the token manager's refresher thread (which does not exist in
// the child) and mutexes other threads may have held at the fork. A child
// must use none of them. A pthread_atfork handler (so forks made from C, such
// as uwsgi's, count as well as os.fork) advances a fork generation; each
// handle remembers the generation it was opened in and, on its first use in
// a child, opens its objects again: fresh connections, a fresh memory store
// (like every worker's own LocMemCache) and a refresher of its own (token
// managers re-open at once, from an os.register_at_fork hook). What the
// parent's objects were is abandoned, never destroyed: destroying them would
// join threads that are not there and use locks that may be held forever;
// their memory is the parent's copy-on-write pages and their sockets stay
// unused. Checking the generation costs one relaxed atomic load per call.
//
// Errors: aicache::Error values become the exceptions of aicache/_errors.py,
// with the code's name, the message (never a secret) and, for rate limits,
// retry_after.
#include <pthread.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/config.h"
#include "aicache/from_config.h"
#include "aicache/memory_store.h"
#include "aicache/redis_store.h"
#include "aicache/token_manager.h"
#include "aicache/version.h"
#include "convert.h"
#include "value_codec.h"

namespace py = pybind11;

namespace aicache::python {
namespace {

// --- Errors ----------------------------------------------------------------

struct ErrorException {
  Error error;
};

[[noreturn]] void raise(Error error) { throw ErrorException{std::move(error)}; }

// Sets the exception of aicache/_errors.py for `error` (what the registered
// translator does for an ErrorException, and the raw entry points below).
void set_python_error(const Error& error) {
  py::object exc = py::module_::import("aicache._errors")
                       .attr("_make")(std::string(to_string(error.code)), error.message,
                                      error.retry_after.count());
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
}

template <class T>
T value_or_raise(Result<T>&& result) {
  if (!result) raise(std::move(result).error());
  return std::move(*result);
}
inline void check(const Status& status) {
  if (!status) raise(status.error());
}

// --- Fork generations --------------------------------------------------------

std::atomic<std::uint64_t> g_generation{0};

extern "C" void after_fork_in_child() { g_generation.fetch_add(1, std::memory_order_relaxed); }

std::uint64_t generation() noexcept { return g_generation.load(std::memory_order_relaxed); }

// Objects a child inherited and must neither use nor destroy (see the top).
void abandon(std::shared_ptr<void> object) {
  if (!object) return;
  static auto* abandoned = new std::vector<std::shared_ptr<void>>();  // never freed, on purpose
  abandoned->push_back(std::move(object));
}

// Runs `f` without the GIL when `release`.
template <class F>
decltype(auto) maybe_without_gil(bool release, F&& f) {
  if (release) {
    py::gil_scoped_release nogil;
    return f();
  }
  return f();
}

// --- Timeouts --------------------------------------------------------------

// Seconds (int or float) as a Ttl: zero or negative removes the entry, as in
// Django. None is `if_none`.
Ttl ttl_from(py::handle timeout, Ttl if_none) {
  if (timeout.is_none()) return if_none;
  if (PyBool_Check(timeout.ptr()) ||
      !(PyLong_Check(timeout.ptr()) || PyFloat_Check(timeout.ptr()))) {
    throw py::type_error(std::string("timeout must be a number of seconds or None, not ") +
                         Py_TYPE(timeout.ptr())->tp_name);
  }
  double seconds = timeout.cast<double>();
  if (std::isnan(seconds)) throw py::value_error("timeout is NaN");
  if (seconds <= 0) return std::chrono::milliseconds(0);
  // Beyond ten years is as good as never, and keeps the arithmetic in range.
  if (seconds > 315'360'000.0) seconds = 315'360'000.0;
  return std::chrono::duration<double>(seconds);
}

py::dict stats_dict(const CacheStats& stats) {
  const StoreStats& s = stats.store;
  py::dict d;
  // The seed's three keys first, as it returned them from Redis's INFO.
  d["used_memory"] = s.used_memory_human;
  std::int64_t clients = 0;
  if (auto it = s.details.find("connected_clients"); it != s.details.end()) {
    try {
      clients = std::stoll(it->second);
    } catch (...) {
    }
  }
  d["connected_clients"] = clients;
  d["total_commands_processed"] = s.commands_processed;
  d["backend"] = s.backend;
  d["used_memory_bytes"] = s.used_memory_bytes;
  d["max_memory_bytes"] = s.max_memory_bytes;
  d["entries"] = s.entries;
  d["hits"] = s.hits;
  d["misses"] = s.misses;
  d["evictions"] = s.evictions;
  d["expirations"] = s.expirations;
  d["store_errors"] = stats.store_errors;
  py::dict details;
  for (const auto& [k, v] : s.details) details[py::str(k)] = v;
  d["details"] = details;
  return d;
}

// --- AssistantCache ----------------------------------------------------------

std::shared_ptr<AssistantCache> open_cache(const Config& config) {
  auto store = value_or_raise(open_store(config));
  return value_or_raise(AssistantCache::create(std::move(store), cache_options(config)));
}

class PyAssistantCache {
 public:
  explicit PyAssistantCache(Config config) : config_(std::move(config)) { open(); }
  ~PyAssistantCache() {
    if (generation_ != generation()) abandon(std::move(cache_));
  }
  PyAssistantCache(const PyAssistantCache&) = delete;
  PyAssistantCache& operator=(const PyAssistantCache&) = delete;

  // The cache of this process (opened again after a fork). Called with the GIL.
  AssistantCache& cache() {
    if (generation_ != generation()) [[unlikely]] {
      abandon(std::move(cache_));
      open();
    }
    return *cache_;
  }
  bool release() const noexcept { return release_; }
  const Config& config() const noexcept { return config_; }

  py::object get_access_token(py::handle channel, py::handle app_id) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    AssistantCache& ai = cache();
    auto token = maybe_without_gil(release_, [&] { return ai.get_access_token(c, a); });
    if (token.failed()) raise(token.error());
    if (!token) return py::none();
    return py::str(*token);
  }

  void set_access_token(py::handle channel, py::handle app_id, const std::string& token,
                        py::handle timeout) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    const Ttl ttl = ttl_from(timeout, Ttl::use_default());
    AssistantCache& ai = cache();
    check(maybe_without_gil(release_, [&] { return ai.set_access_token(c, a, token, ttl); }));
  }

  bool delete_access_token(py::handle channel, py::handle app_id) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    AssistantCache& ai = cache();
    return value_or_raise(
        maybe_without_gil(release_, [&] { return ai.remove_access_token(c, a); }));
  }

  // Reads a document; its text becomes Python objects with the GIL held.
  template <class Get>
  py::object get_document(Get&& get) {
    std::optional<std::string> text;
    Error error;
    bool failed = false;
    maybe_without_gil(release_, [&] {
      Lookup<JsonDocument> doc = get();
      if (doc.failed()) {
        failed = true;
        error = doc.error();
      } else if (doc) {
        text.emplace(doc->text());  // valid JSON: written by us, or checked by AssistantCache
      }
    });
    if (failed) raise(std::move(error));
    if (!text) return py::none();
    return from_json_text(*text);
  }

  // Writes a document: the text is made from the Python objects with the GIL
  // held, valid JSON by construction (to_json_text), so it is not parsed again.
  template <class Set>
  void set_document(py::handle value, Set&& set) {
    std::string text = to_json_text(value);
    check(maybe_without_gil(release_, [&] {
      return set(JsonDocument::from_trusted_text(std::move(text)));
    }));
  }

  py::object get_conversation(py::handle id) {
    const std::string key = id_text(id, "conversation_id");
    AssistantCache& ai = cache();
    return get_document([&] { return ai.get_conversation(key); });
  }
  void set_conversation(py::handle id, py::handle data, py::handle timeout) {
    const std::string key = id_text(id, "conversation_id");
    const Ttl ttl = ttl_from(timeout, Ttl::use_default());
    AssistantCache& ai = cache();
    set_document(data, [&](const JsonDocument& doc) { return ai.set_conversation(key, doc, ttl); });
  }
  bool delete_conversation(py::handle id) {
    const std::string key = id_text(id, "conversation_id");
    AssistantCache& ai = cache();
    return value_or_raise(maybe_without_gil(release_, [&] { return ai.remove_conversation(key); }));
  }

  py::object get_ai_config(py::handle user_id) {
    const std::string key = id_text(user_id, "user_id");
    AssistantCache& ai = cache();
    return get_document([&] { return ai.get_ai_config(key); });
  }
  void set_ai_config(py::handle user_id, py::handle config, py::handle timeout) {
    const std::string key = id_text(user_id, "user_id");
    const Ttl ttl = ttl_from(timeout, Ttl::use_default());
    AssistantCache& ai = cache();
    set_document(config, [&](const JsonDocument& doc) { return ai.set_ai_config(key, doc, ttl); });
  }
  bool delete_ai_config(py::handle user_id) {
    const std::string key = id_text(user_id, "user_id");
    AssistantCache& ai = cache();
    return value_or_raise(maybe_without_gil(release_, [&] { return ai.remove_ai_config(key); }));
  }

  py::object get(const std::string& key, py::object fallback) {
    AssistantCache& ai = cache();
    py::object value = get_document([&] { return ai.get(key); });
    return value.is_none() ? fallback : value;
  }
  void set(const std::string& key, py::handle value, py::handle timeout) {
    const Ttl ttl = ttl_from(timeout, Ttl::use_default());
    AssistantCache& ai = cache();
    set_document(value, [&](const JsonDocument& doc) { return ai.set(key, doc, ttl); });
  }
  bool remove(const std::string& key) {
    AssistantCache& ai = cache();
    return value_or_raise(maybe_without_gil(release_, [&] { return ai.remove(key); }));
  }
  std::int64_t incr(const std::string& key, std::int64_t delta) {
    AssistantCache& ai = cache();
    return value_or_raise(maybe_without_gil(release_, [&] { return ai.incr(key, delta); }));
  }
  std::uint64_t clear() {
    AssistantCache& ai = cache();
    return value_or_raise(maybe_without_gil(release_, [&] { return ai.clear(); }));
  }
  py::dict get_stats() {
    AssistantCache& ai = cache();
    return stats_dict(value_or_raise(maybe_without_gil(release_, [&] { return ai.stats(); })));
  }

 private:
  void open() {
    cache_ = open_cache(config_);
    release_ = !cache_->process_local();
    generation_ = generation();
  }

  Config config_;
  std::shared_ptr<AssistantCache> cache_;
  bool release_ = true;
  std::uint64_t generation_ = 0;
};

Config load(std::optional<std::string> path) {
  ConfigSources sources;
  if (path) sources.config_file = std::filesystem::path(*path);
  return value_or_raise(load_config(sources));
}

// --- TokenManager ------------------------------------------------------------

class PyTokenManager;

// The live token managers (changed and read with the GIL held), so that a
// forked child can start their refreshers at once (reopen_token_managers).
std::vector<PyTokenManager*>& token_managers() {
  static auto* managers = new std::vector<PyTokenManager*>();
  return *managers;
}

class PyTokenManager {
 public:
  PyTokenManager(Config config, std::chrono::milliseconds refresh_interval)
      : config_(std::move(config)), interval_(refresh_interval) {
    open();
    token_managers().push_back(this);
  }
  ~PyTokenManager() {
    std::erase(token_managers(), this);
    if (generation_ != generation()) {
      abandon(std::move(manager_));
      abandon(std::move(cache_));
      return;
    }
    py::gil_scoped_release nogil;
    manager_.reset();  // stops and joins the refresher
  }
  PyTokenManager(const PyTokenManager&) = delete;
  PyTokenManager& operator=(const PyTokenManager&) = delete;

  TokenManager& manager() {
    if (generation_ != generation()) [[unlikely]] {
      abandon(std::move(manager_));
      abandon(std::move(cache_));
      open();
    }
    return *manager_;
  }

  std::string access_token(py::handle channel, py::handle app_id) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    TokenManager& m = manager();
    return value_or_raise([&] {
             py::gil_scoped_release nogil;
             return m.get(c, a);
           }())
        .access_token;
  }

  py::dict token(py::handle channel, py::handle app_id) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    TokenManager& m = manager();
    Token t = value_or_raise([&] {
      py::gil_scoped_release nogil;
      return m.get(c, a);
    }());
    py::dict d;
    d["access_token"] = t.access_token;
    d["expires_in"] = t.expires_in.count();
    return d;
  }

  std::string refresh(py::handle channel, py::handle app_id, bool force) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    TokenManager& m = manager();
    return value_or_raise([&] {
             py::gil_scoped_release nogil;
             return m.refresh(c, a, force);
           }())
        .access_token;
  }

  bool invalidate(py::handle channel, py::handle app_id, const std::string& bad_token) {
    const std::string c = id_text(channel, "channel");
    const std::string a = id_text(app_id, "app_id");
    TokenManager& m = manager();
    return value_or_raise([&] {
      py::gil_scoped_release nogil;
      return m.invalidate(c, a, bad_token);
    }());
  }

  py::list stats() {
    TokenManager& m = manager();
    std::vector<TokenAppStats> apps;
    {
      py::gil_scoped_release nogil;
      apps = m.stats();
    }
    py::list out;
    for (const auto& s : apps) {
      py::dict d;
      d["channel"] = s.channel;
      d["app_id"] = s.app_key;
      d["hits"] = s.hits;
      d["fetches"] = s.fetches;
      d["fetch_failures_retryable"] = s.fetch_failures_retryable;
      d["fetch_failures_configuration"] = s.fetch_failures_configuration;
      d["fetch_failures_quota"] = s.fetch_failures_quota;
      d["waits"] = s.waits;
      d["invalidations"] = s.invalidations;
      if (s.last_fetch) {
        d["last_fetch"] = std::chrono::duration<double>(s.last_fetch->time_since_epoch()).count();
      } else {
        d["last_fetch"] = py::none();
      }
      if (s.seconds_until_expiry) {
        d["seconds_until_expiry"] = *s.seconds_until_expiry;
      } else {
        d["seconds_until_expiry"] = py::none();
      }
      d["refresh_margin_seconds"] = s.refresh_margin_seconds;
      d["last_error"] = s.last_error;
      out.append(d);
    }
    return out;
  }

  // In a forked child: opens the child's own objects and refresher now, so
  // that a worker's tokens are refreshed before its first request. A failure
  // (Redis unreachable) is left for the first call, which tries again.
  void reopen_if_forked() noexcept {
    try {
      manager();
    } catch (...) {
    }
  }

  // Stops the refresher, here and in children forked later.
  void close() {
    TokenManager& m = manager();
    closed_ = true;
    py::gil_scoped_release nogil;
    m.stop_refresher();
  }

 private:
  void open() {
    cache_ = open_cache(config_);
    manager_ = value_or_raise(open_token_manager(config_, cache_));
    if (interval_.count() > 0 && !closed_) manager_->start_refresher(interval_);
    generation_ = generation();
  }

  Config config_;
  std::chrono::milliseconds interval_;
  bool closed_ = false;
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> manager_;
  std::uint64_t generation_ = 0;
};

// --- Store ---------------------------------------------------------------------

using StoreSpec = std::variant<MemoryStoreOptions, RedisStoreOptions>;

class PyStore {
 public:
  explicit PyStore(StoreSpec spec) : spec_(std::move(spec)) { open(); }
  ~PyStore() {
    if (generation_ != generation()) abandon(std::move(store_));
  }
  PyStore(const PyStore&) = delete;
  PyStore& operator=(const PyStore&) = delete;

  Store& store() {
    if (generation_ != generation()) [[unlikely]] {
      abandon(std::move(store_));
      open();
    }
    return *store_;
  }
  bool process_local() const noexcept { return !release_; }

  template <class F>
  decltype(auto) io(F&& f) {
    return maybe_without_gil(release_, std::forward<F>(f));
  }

  py::object get(std::string_view key) {
    Store& s = store();
    auto value = value_or_raise(io([&] { return s.get(key); }));
    if (!value) return py::none();
    return py::bytes(*value);
  }

  // The Django backend's paths on the memory store (aicache/django.py): a
  // value packed straight into the store, and read back straight from it,
  // with no bytes object in between (value_codec.h). False: not packable
  // (the caller pickles it and calls set). Only on a process-local store:
  // other processes (django-redis) must never meet the private form.
  bool set_packed(std::string_view key, py::handle value, py::handle timeout) {
    if (!process_local()) throw py::value_error("_set_packed: only on the memory store");
    const Ttl ttl = ttl_from(timeout, Ttl::never());
    const std::optional<std::string_view> packed = pack_value(value.ptr());
    if (!packed) return false;
    Store& s = store();
    const Status status = io([&] { return s.set(key, *packed, ttl); });
    trim_pack_buffer();
    check(status);
    return true;
  }

  // `default_` for a miss, the value of a packed entry, decode(bytes) of any
  // other (ints as digits, pickles).
  py::object get_decoded(std::string_view key, py::handle default_, py::handle decode) {
    Store& s = store();
    auto value = value_or_raise(io([&] { return s.get(key); }));
    if (!value) return py::reinterpret_borrow<py::object>(default_);
    if (is_packed(*value) && process_local()) return unpack_value(*value);
    return decode(py::bytes(*value));
  }

  py::list get_many(const std::vector<std::string>& keys) {
    Store& s = store();
    auto values = value_or_raise(io([&] { return s.get_many(keys); }));
    py::list out(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      out[i] = values[i] ? py::object(py::bytes(*values[i])) : py::none();
    }
    return out;
  }

  void set(std::string_view key, std::string_view value, py::handle timeout) {
    const Ttl ttl = ttl_from(timeout, Ttl::never());
    Store& s = store();
    check(io([&] { return s.set(key, value, ttl); }));
  }

  void set_many(const std::vector<std::pair<std::string, py::bytes>>& entries,
                py::handle timeout) {
    const Ttl ttl = ttl_from(timeout, Ttl::never());
    std::vector<std::pair<std::string, std::string>> copy;
    copy.reserve(entries.size());
    for (const auto& [k, v] : entries) copy.emplace_back(k, std::string(v));
    Store& s = store();
    check(io([&] { return s.set_many(copy, ttl); }));
  }

  bool add(std::string_view key, std::string_view value, py::handle timeout) {
    const Ttl ttl = ttl_from(timeout, Ttl::never());
    Store& s = store();
    return value_or_raise(io([&] { return s.add(key, value, ttl); }));
  }

  bool remove(std::string_view key) {
    Store& s = store();
    return value_or_raise(io([&] { return s.remove(key); }));
  }

  std::uint64_t remove_many(const std::vector<std::string>& keys) {
    Store& s = store();
    return value_or_raise(io([&] { return s.remove_many(keys); }));
  }

  bool touch(std::string_view key, py::handle timeout) {
    const Ttl ttl = ttl_from(timeout, Ttl::never());
    Store& s = store();
    return value_or_raise(io([&] { return s.touch(key, ttl); }));
  }

  std::int64_t incr(std::string_view key, std::int64_t delta) {
    Store& s = store();
    return value_or_raise(io([&] { return s.incr(key, delta, Ttl::never()); }));
  }

  // Seconds left: None for no expiry, -1.0 for a missing key (a float, so the
  // common case is one comparison).
  py::object ttl(std::string_view key) {
    Store& s = store();
    KeyTtl t = value_or_raise(io([&] { return s.ttl(key); }));
    switch (t.state) {
      case KeyTtl::State::kMissing: return py::float_(-1.0);
      case KeyTtl::State::kPersistent: return py::none();
      case KeyTtl::State::kExpiring: return py::float_(static_cast<double>(t.remaining.count()) / 1000.0);
    }
    return py::none();
  }

  bool exists(std::string_view key) {
    Store& s = store();
    return value_or_raise(io([&] { return s.ttl(key); })).state != KeyTtl::State::kMissing;
  }

  std::uint64_t clear(std::string_view prefix) {
    Store& s = store();
    return value_or_raise(io([&] { return s.clear(prefix); }));
  }

  py::dict stats() {
    Store& s = store();
    CacheStats stats{.store = value_or_raise(io([&] { return s.stats(); }))};
    return stats_dict(stats);
  }

 private:
  void open() {
    if (const auto* memory = std::get_if<MemoryStoreOptions>(&spec_)) {
      store_ = make_memory_store(*memory);
    } else {
      store_ = value_or_raise(make_redis_store(std::get<RedisStoreOptions>(spec_)));
    }
    release_ = !store_->process_local();
    generation_ = generation();
  }

  StoreSpec spec_;
  std::shared_ptr<Store> store_;
  bool release_ = true;
  std::uint64_t generation_ = 0;
};

// --- The Django backend's hot paths, without pybind11's dispatcher -------------
//
// Store._get_decoded and Store._set_packed run for every cache.get and
// cache.set of AicacheCache on the memory store. pybind11's dispatcher (its
// argument vectors, overload loop and casters) costs more than the memory
// store's own work, so these two are plain METH_FASTCALL methods of the same
// type (installed in PYBIND11_MODULE below): `self` through pybind11's caster,
// the arguments raw, and the exceptions pybind11's dispatcher would set.

template <class F>
PyObject* raw_call(F&& f) noexcept {
  try {
    return std::forward<F>(f)();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const ErrorException& e) {
    try {
      set_python_error(e.error);
    } catch (py::error_already_set& inner) {
      inner.restore();
    }
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

std::string_view key_arg(PyObject* key) {
  if (!PyUnicode_Check(key)) {
    throw py::type_error(std::string("key must be str, not ") + Py_TYPE(key)->tp_name);
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(key, &size);
  if (data == nullptr) throw py::error_already_set();
  return {data, static_cast<std::size_t>(size)};
}

PyObject* store_get_decoded(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return raw_call([&]() -> PyObject* {
    if (nargs != 3) throw py::type_error("Store._get_decoded(key, default, decode)");
    return py::cast<PyStore&>(py::handle(self))
        .get_decoded(key_arg(args[0]), args[1], args[2])
        .release()
        .ptr();
  });
}

PyObject* store_set_packed(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return raw_call([&]() -> PyObject* {
    if (nargs != 3) throw py::type_error("Store._set_packed(key, value, timeout)");
    return PyBool_FromLong(
        py::cast<PyStore&>(py::handle(self)).set_packed(key_arg(args[0]), args[1], args[2]));
  });
}

template <PyObject* (*F)(PyObject*, PyObject* const*, Py_ssize_t)>
PyCFunction fastcall() {
  // METH_FASTCALL's signature is not PyCFunction's; CPython casts it back.
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(F));
}

PyMethodDef store_get_decoded_def = {
    "_get_decoded", fastcall<&store_get_decoded>(), METH_FASTCALL,
    "_get_decoded(key, default, decode): the value of a packed entry (aicache._aicache._pack's "
    "form), decode(bytes) of any other, `default` for a miss: AicacheCache.get on the memory "
    "store."};
PyMethodDef store_set_packed_def = {
    "_set_packed", fastcall<&store_set_packed>(), METH_FASTCALL,
    "_set_packed(key, value, timeout) -> bool: stores the value in _pack's form; False "
    "(storing nothing) when it is not a plain value that form keeps exactly: AicacheCache.set "
    "on the memory store."};

std::chrono::milliseconds seconds_to_ms(double seconds, const char* what) {
  if (!(seconds > 0) || seconds > 3600) {
    throw py::value_error(std::string(what) + " must be between 0 and 3600 seconds");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000)));
}

// --- Redis topologies: TLS, Sentinel and Cluster ---------------------------------
//
// The keyword arguments Store.redis and AssistantCache share. Each is checked
// here, so that a mistake raises aicache.ConfigError naming the argument (and
// never quoting a password); what the C++ store checks itself (files that
// cannot be read, TLS files with a plain URL, the master's name) it reports
// in its own words, also as ConfigError.

[[noreturn]] void config_error(std::string message) {
  raise(Error{ErrorCode::kConfig, std::move(message)});
}

std::string type_name(py::handle value) { return Py_TYPE(value.ptr())->tp_name; }

// None (unset: ""), a str or an os.PathLike giving a str.
std::string path_arg(py::handle value, const char* name) {
  if (value.is_none()) return {};
  py::object path = py::reinterpret_steal<py::object>(PyOS_FSPath(value.ptr()));
  if (!path) {
    PyErr_Clear();
  } else if (py::isinstance<py::str>(path)) {
    std::string text = path.cast<std::string>();
    if (text.empty()) config_error(std::string(name) + " is empty");
    return text;
  }
  config_error(std::string(name) + " must be a path (str or os.PathLike), not " + type_name(value));
}

// None (""), or a str; the value is never quoted (it may be a password).
std::string text_arg(py::handle value, const char* name) {
  if (value.is_none()) return {};
  if (!py::isinstance<py::str>(value)) {
    config_error(std::string(name) + " must be a str, not " + type_name(value));
  }
  return value.cast<std::string>();
}

// "host", "host:port" or "[v6]:port" (default_port when left out).
RedisHostPort host_port_text(std::string_view text, std::uint16_t default_port,
                             const std::string& what) {
  auto parsed = parse_redis_host_port(text, default_port);
  if (!parsed) config_error(what + ": " + parsed.error().message);
  return std::move(*parsed);
}

// A list of addresses: "host:port" strings or (host, port) pairs, or one str
// of comma-separated addresses (as REDIS_SENTINELS is written).
std::vector<RedisHostPort> addresses_arg(py::handle value, const char* name,
                                         std::uint16_t default_port) {
  constexpr std::size_t kMaxAddresses = 64;  // as load_config's REDIS_SENTINELS
  std::vector<RedisHostPort> out;
  if (value.is_none()) return out;
  auto add = [&](RedisHostPort address) {
    if (out.size() == kMaxAddresses) {
      config_error(std::string(name) + " lists more than " + std::to_string(kMaxAddresses) +
                   " addresses");
    }
    out.push_back(std::move(address));
  };
  const std::string list_name(name);
  if (py::isinstance<py::str>(value)) {
    const std::string text = value.cast<std::string>();
    std::size_t start = 0;
    for (std::size_t i = 0;; ++i) {
      const std::size_t comma = std::min(text.find(',', start), text.size());
      std::string_view one(text.data() + start, comma - start);
      while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
      while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
      add(host_port_text(one, default_port, list_name + "[" + std::to_string(i) + "]"));
      if (comma == text.size()) break;
      start = comma + 1;
    }
    return out;
  }
  if (py::isinstance<py::bytes>(value) || !py::isinstance<py::iterable>(value)) {
    config_error(list_name +
                 " must be a list of \"host:port\" strings or (host, port) tuples, "
                 "not " +
                 type_name(value));
  }
  std::size_t i = 0;
  for (py::handle item : value) {
    const std::string what = list_name + "[" + std::to_string(i++) + "]";
    if (py::isinstance<py::str>(item)) {
      add(host_port_text(item.cast<std::string>(), default_port, what));
      continue;
    }
    if ((py::isinstance<py::tuple>(item) || py::isinstance<py::list>(item)) && py::len(item) == 2) {
      py::sequence pair = py::reinterpret_borrow<py::sequence>(item);
      py::object host = pair[0];
      py::object port = pair[1];
      if (!py::isinstance<py::str>(host) || host.cast<std::string>().empty()) {
        config_error(what + ": the host must be a non-empty str");
      }
      if (PyBool_Check(port.ptr()) || !PyLong_Check(port.ptr())) {
        config_error(what + ": the port must be an int, not " + type_name(port));
      }
      const long long number = PyLong_AsLongLong(port.ptr());
      if (PyErr_Occurred()) PyErr_Clear();
      if (number < 1 || number > 65535) config_error(what + ": the port must be 1 to 65535");
      add(RedisHostPort{host.cast<std::string>(), static_cast<std::uint16_t>(number)});
      continue;
    }
    config_error(what + " must be a \"host:port\" str or a (host, port) tuple, not " +
                 type_name(item));
  }
  if (out.empty()) config_error(list_name + " is empty");
  return out;
}

// "host:port", "[v6]:port" for an IPv6 address: the form load_config reads.
std::string address_text(const RedisHostPort& address) {
  if (address.host.find(':') != std::string::npos) {
    return "[" + address.host + "]:" + std::to_string(address.port);
  }
  return address.host + ":" + std::to_string(address.port);
}

struct RedisTopology {
  RedisTlsOptions tls;
  RedisSentinelOptions sentinel;
  std::vector<std::string> cluster_nodes;  // "host:port" each (RedisStoreOptions's form)
  bool read_from_replicas = false;

  bool tls_files() const {
    return !tls.ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty();
  }
};

// A bool argument: True or False only (pybind11's bool would take any
// object with a truth value: "no" would be True).
bool strict_bool_arg(py::handle value, const char* name) {
  if (!py::isinstance<py::bool_>(value)) {
    config_error(std::string(name) + " must be True or False, not " + type_name(value));
  }
  return value.cast<bool>();
}

RedisTopology topology_args(py::handle tls_ca_file, py::handle tls_cert_file,
                            py::handle tls_key_file, bool tls_verify, py::handle sentinels,
                            py::handle sentinel_master, py::handle sentinel_password,
                            py::handle sentinel_username, py::handle sentinel_tls,
                            py::handle cluster_nodes, py::handle read_from_replicas_arg) {
  const bool read_from_replicas = strict_bool_arg(read_from_replicas_arg, "read_from_replicas");
  RedisTopology t;
  t.tls.ca_file = path_arg(tls_ca_file, "tls_ca_file");
  t.tls.cert_file = path_arg(tls_cert_file, "tls_cert_file");
  t.tls.key_file = path_arg(tls_key_file, "tls_key_file");
  if (t.tls.cert_file.empty() != t.tls.key_file.empty()) {
    config_error("tls_cert_file and tls_key_file go together: a client certificate needs both");
  }
  t.tls.verify = tls_verify;
  t.sentinel.sentinels = addresses_arg(sentinels, "sentinels", kRedisSentinelPort);
  t.sentinel.master_name = text_arg(sentinel_master, "sentinel_master");
  t.sentinel.password = text_arg(sentinel_password, "sentinel_password");
  t.sentinel.username = text_arg(sentinel_username, "sentinel_username");
  if (!sentinel_tls.is_none()) {
    t.sentinel.tls = strict_bool_arg(sentinel_tls, "sentinel_tls (or None: as url's scheme)");
  }
  if (t.sentinel.sentinels.empty()) {
    if (!t.sentinel.master_name.empty()) config_error("sentinel_master needs sentinels");
    if (!t.sentinel.password.empty()) config_error("sentinel_password needs sentinels");
    if (!t.sentinel.username.empty()) config_error("sentinel_username needs sentinels");
    if (t.sentinel.tls) config_error("sentinel_tls needs sentinels");
  } else if (t.sentinel.master_name.empty()) {
    config_error("sentinels need sentinel_master: the name the sentinels monitor the master under");
  }
  for (const RedisHostPort& node : addresses_arg(cluster_nodes, "cluster_nodes", 6379)) {
    t.cluster_nodes.push_back(address_text(node));
  }
  if (!t.cluster_nodes.empty() && !t.sentinel.sentinels.empty()) {
    config_error(
        "cluster_nodes and sentinels exclude each other: a Redis Cluster or a "
        "Sentinel-managed master");
  }
  if (read_from_replicas && t.cluster_nodes.empty()) {
    config_error("read_from_replicas applies to a Redis Cluster only: it needs cluster_nodes");
  }
  t.read_from_replicas = read_from_replicas;
  return t;
}

// The same, as the Config AssistantCache opens (and opens again after a fork).
void apply_topology(const RedisTopology& t, Config& config) {
  config.redis_tls_ca_file = t.tls.ca_file;
  config.redis_tls_cert_file = t.tls.cert_file;
  config.redis_tls_key_file = t.tls.key_file;
  config.redis_tls_verify = t.tls.verify;
  config.redis_sentinels.clear();
  for (const RedisHostPort& s : t.sentinel.sentinels) {
    config.redis_sentinels.push_back(address_text(s));
  }
  config.redis_sentinel_master = t.sentinel.master_name;
  config.redis_sentinel_password = t.sentinel.password;
  config.redis_sentinel_username = t.sentinel.username;
  config.redis_sentinel_tls = t.sentinel.tls;
  config.redis_cluster_nodes = t.cluster_nodes;
  config.redis_read_from_replicas = t.read_from_replicas;
}

std::unique_ptr<PyAssistantCache> make_cache(std::optional<std::string> url, std::string key_prefix,
                                             std::int64_t key_version, py::handle default_timeout,
                                             const RedisTopology& topology) {
  Config config;
  if (url && !url->empty()) {
    config.redis_url = *url;
  } else if (!topology.sentinel.sentinels.empty() || !topology.cluster_nodes.empty()) {
    // The master's (or masters') address comes from the sentinels (or the
    // seed nodes); the URL would give only the password and db.
    config.redis_url = "redis://127.0.0.1:6379/0";
  } else if (topology.tls_files() || !topology.tls.verify) {
    config_error("tls_* arguments need url=\"rediss://...\" (no url is the memory store)");
  }
  apply_topology(topology, config);
  config.key_prefix = std::move(key_prefix);
  config.key_version = key_version;
  if (!default_timeout.is_none()) {
    const Ttl ttl = ttl_from(default_timeout, Ttl::never());
    if (ttl.kind() != Ttl::Kind::kDuration || ttl.removes()) {
      throw py::value_error("default_timeout must be a positive number of seconds");
    }
    config.default_timeout = std::chrono::ceil<std::chrono::seconds>(ttl.duration());
  }
  return std::make_unique<PyAssistantCache>(std::move(config));
}

}  // namespace
}  // namespace aicache::python

using namespace aicache;
using namespace aicache::python;

PYBIND11_MODULE(_aicache, m) {
  m.doc() = "aicache's C++ core: AssistantCache, TokenManager and Store. Import `aicache`.";
  m.attr("__version__") = std::to_string(AICACHE_VERSION_MAJOR) + "." +
                          std::to_string(AICACHE_VERSION_MINOR) + "." +
                          std::to_string(AICACHE_VERSION_PATCH);

  static bool registered = [] {
    pthread_atfork(nullptr, nullptr, &after_fork_in_child);
    return true;
  }();
  (void)registered;
  m.def(
      "_after_fork_in_child",
      [] {
        const std::vector<PyTokenManager*> managers = token_managers();
        for (PyTokenManager* manager : managers) manager->reopen_if_forked();
      },
      "Starts the token managers' own connections and refreshers in a forked child "
      "(os.register_at_fork in aicache/__init__.py). Without it (a fork Python does not "
      "see, such as uwsgi's) the first call does it.");
  add_value_codec(m);
  m.def("_fork_generation", &generation,
        "How many forks this process is down from the one that imported aicache (for tests).");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ErrorException& e) {
      set_python_error(e.error);
    }
  });

  py::class_<PyAssistantCache>(m, "AssistantCache", R"doc(
The Django system's AIAssistantCache over aicache's C++ core.

    cache = aicache.AssistantCache()                       # in-process memory store
    cache = aicache.AssistantCache(url="redis://127.0.0.1:6379/0",
                                   key_prefix="blbs_erp", key_version=1)
    cache = aicache.AssistantCache.from_config()           # env, .env, aicache.toml

Stored keys are Django's "{key_prefix}:{key_version}:{key}" and values JSON
text (integers as their digits), so a Django app using django-redis with the
JSONSerializer and the same KEY_PREFIX and VERSION shares the entries.

Values are JSON types (None, bool, int, float, str, list, tuple, dict);
anything else raises TypeError naming the type. A miss is None. Ids may be
str or int. A timeout is in seconds; None means the entry's default (2 h for
tokens, 1 h for conversations, 5 min for AI configurations, 300 s for generic
values); zero or negative removes the entry.

A read while Redis is down is a miss (counted in get_stats()["store_errors"]);
a failed write raises aicache.StoreError; bad input raises
aicache.InvalidArgumentError (a ValueError).

Thread-safe; calls on Redis release the GIL. Fork-safe: a forked worker opens
its own connections (and its own, empty, memory store) on first use.
)doc")
      .def(py::init([](std::optional<std::string> url, std::string key_prefix,
                       std::int64_t key_version, py::object default_timeout, py::object tls_ca_file,
                       py::object tls_cert_file, py::object tls_key_file, bool tls_verify,
                       py::object sentinels, py::object sentinel_master,
                       py::object sentinel_password, py::object sentinel_username,
                       py::object sentinel_tls, py::object cluster_nodes,
                       py::object read_from_replicas) {
             const RedisTopology topology =
                 topology_args(tls_ca_file, tls_cert_file, tls_key_file, tls_verify, sentinels,
                               sentinel_master, sentinel_password, sentinel_username,
                               sentinel_tls, cluster_nodes, read_from_replicas);
             return make_cache(std::move(url), std::move(key_prefix), key_version, default_timeout,
                               topology);
           }),
           py::kw_only(), py::arg("url") = py::none(), py::arg("key_prefix") = "",
           py::arg("key_version") = 1, py::arg("default_timeout") = py::none(),
           py::arg("tls_ca_file") = py::none(), py::arg("tls_cert_file") = py::none(),
           py::arg("tls_key_file") = py::none(), py::arg("tls_verify") = true,
           py::arg("sentinels") = py::none(), py::arg("sentinel_master") = py::none(),
           py::arg("sentinel_password") = py::none(), py::arg("sentinel_username") = py::none(),
           py::arg("sentinel_tls") = py::none(), py::arg("cluster_nodes") = py::none(),
           py::arg("read_from_replicas") = py::bool_(false),
           "A cache on the memory store (no url) or on Redis (url: redis://[[user]:password@]"
           "host[:port][/db], rediss://... for TLS, or unix:///path?db=N). default_timeout: "
           "seconds for generic values set without one (300).\n\n"
           "TLS (rediss://): tls_ca_file (the CAs the server's certificate must chain to; "
           "default: the system's), tls_cert_file and tls_key_file (a client certificate, both "
           "or neither), tls_verify (True: check the certificate and the host name; False "
           "encrypts without authenticating the server, with a warning).\n"
           "Sentinel: sentinels (\"host:port\" strings or (host, port) tuples, port 26379 when "
           "left out), sentinel_master (the master's name at the sentinels, required with them), "
           "sentinel_password and sentinel_username (the sentinels' own credentials), "
           "sentinel_tls (TLS to the sentinels; None: when url is rediss://). The master is "
           "asked of the "
           "sentinels and followed through failovers; url then gives only the master's user, "
           "password and db (its host is ignored; no url: db 0, no password).\n"
           "Cluster: cluster_nodes (seed nodes, \"host:port\" strings or (host, port) tuples): "
           "keys go to their hash slot's master; url then gives only the user and password "
           "(db 0 only). read_from_replicas=True sends reads to the masters' replicas, which "
           "may lag by the replication delay (writes and the token lease stay on masters).\n"
           "Raises aicache.ConfigError naming the argument, or aicache.StoreError.")
      .def_static(
          "from_config",
          [](std::optional<std::string> path) {
            return std::make_unique<PyAssistantCache>(load(std::move(path)));
          },
          py::arg("path") = py::none(),
          "A cache as the configuration describes it, by the CLI's rules: the environment "
          "(REDIS_URL, REDIS_HOST..., AICACHE_KEY_PREFIX, AICACHE_KEY_VERSION), .env in the "
          "working directory, then `path`, $AICACHE_CONFIG or ./aicache.toml. Nothing "
          "configured: the memory store. Raises aicache.ConfigError.")
      .def("get_access_token", &PyAssistantCache::get_access_token, py::arg("channel"),
           py::arg("app_id"), "The stored access token of (channel, app_id), or None.")
      .def("set_access_token", &PyAssistantCache::set_access_token, py::arg("channel"),
           py::arg("app_id"), py::arg("token"), py::arg("timeout") = 7200,
           "Stores an access token (printable ASCII without spaces, 1 to 4096 bytes) for "
           "`timeout` seconds.")
      .def("delete_access_token", &PyAssistantCache::delete_access_token, py::arg("channel"),
           py::arg("app_id"), "Removes the token; True if there was one.")
      .def("get_conversation", &PyAssistantCache::get_conversation, py::arg("conversation_id"),
           "The stored conversation (JSON), or None.")
      .def("set_conversation", &PyAssistantCache::set_conversation, py::arg("conversation_id"),
           py::arg("data"), py::arg("timeout") = 3600, "Stores a conversation (JSON).")
      .def("delete_conversation", &PyAssistantCache::delete_conversation,
           py::arg("conversation_id"), "Removes the conversation; True if there was one.")
      .def("get_ai_config", &PyAssistantCache::get_ai_config, py::arg("user_id"),
           "The user's stored AI configuration (JSON), or None.")
      .def("set_ai_config", &PyAssistantCache::set_ai_config, py::arg("user_id"), py::arg("config"),
           py::arg("timeout") = 300, "Stores a user's AI configuration (JSON).")
      .def("delete_ai_config", &PyAssistantCache::delete_ai_config, py::arg("user_id"),
           "Removes the user's AI configuration; True if there was one.")
      .def("get", &PyAssistantCache::get, py::arg("key"), py::arg("default") = py::none(),
           "The value of a generic key, or `default` on a miss.")
      .def("set", &PyAssistantCache::set, py::arg("key"), py::arg("value"),
           py::arg("timeout") = py::none(),
           "Stores a generic value; timeout None: the default (300 s). Keys starting with "
           "'ai_assistant:' belong to the typed calls and are refused.")
      .def("delete", &PyAssistantCache::remove, py::arg("key"),
           "Removes a generic key; True if it existed.")
      .def("incr", &PyAssistantCache::incr, py::arg("key"), py::arg("delta") = 1,
           "Adds `delta` to an integer value (a missing key starts from 0); the new value.")
      .def("clear", &PyAssistantCache::clear,
           "Deletes every entry of this cache's key prefix and version, and nothing else; "
           "how many.")
      .def("get_stats", &PyAssistantCache::get_stats,
           "Figures: the seed's used_memory (human), connected_clients and "
           "total_commands_processed, then backend, used_memory_bytes, max_memory_bytes, "
           "entries, hits, misses, evictions, expirations, store_errors and the backend's "
           "details.")
      .def_property_readonly("key_prefix",
                             [](const PyAssistantCache& c) { return c.config().key_prefix; })
      .def_property_readonly("key_version",
                             [](const PyAssistantCache& c) { return c.config().key_version; })
      .def_property_readonly(
          "backend", [](const PyAssistantCache& c) { return c.release() ? "redis" : "memory"; });

  py::class_<PyTokenManager>(m, "TokenManager", R"doc(
Access tokens of WeChat, WeCom and DingTalk apps, with one upstream fetch per
refresh across every process that shares the store.

    tokens = aicache.TokenManager.from_config()   # [[apps]] of aicache.toml, REDIS_URL...
    token = tokens.access_token("wechat", "wx0123456789abcdef")

A token is served from the store; when it is missing or near its end, one
caller in the whole deployment fetches it and the others wait for it (up to
45 s). A background thread refreshes tokens before they are due, so requests
rarely wait. After the platform rejects a token, call
invalidate(channel, app_id, token) and then access_token() again.

WeCom apps are named "{corp_id}.{agent_id}". Failures raise aicache.UpstreamError
or aicache.ConfigError with the platform's code (platform_code) and message,
never the secret; a refused refresh raises aicache.RateLimitedError.
Calls release the GIL. Fork-safe: a forked worker opens its own connections
and runs its own refresher on first use.
)doc")
      .def_static(
          "from_config",
          [](std::optional<std::string> path, double refresh_interval) {
            std::chrono::milliseconds interval{0};
            if (refresh_interval > 0) interval = seconds_to_ms(refresh_interval, "refresh_interval");
            return std::make_unique<PyTokenManager>(load(std::move(path)), interval);
          },
          py::arg("path") = py::none(), py::kw_only(), py::arg("refresh_interval") = 1.0,
          "The token manager of the configuration's [[apps]] over its store (same rules as "
          "AssistantCache.from_config). refresh_interval: seconds between the background "
          "refresher's passes; 0 runs none. Raises aicache.ConfigError.")
      .def("access_token", &PyTokenManager::access_token, py::arg("channel"), py::arg("app_id"),
           "A valid access token, from the store or fetched once for everyone.")
      .def("token", &PyTokenManager::token, py::arg("channel"), py::arg("app_id"),
           "Like access_token(), as {'access_token': ..., 'expires_in': seconds}.")
      .def("refresh", &PyTokenManager::refresh, py::arg("channel"), py::arg("app_id"),
           py::arg("force") = false,
           "Fetches a new token now (limited per app: aicache.RateLimitedError).")
      .def("invalidate", &PyTokenManager::invalidate, py::arg("channel"), py::arg("app_id"),
           py::arg("token"),
           "After the platform rejected `token`: removes it if it is still the stored one. "
           "True if removed.")
      .def("stats", &PyTokenManager::stats,
           "Figures per app (hits, fetches, failures, waits, seconds_until_expiry...); never "
           "the token or the secret.")
      .def("close", &PyTokenManager::close, "Stops the background refresher.");

  py::class_<PyStore>(m, "Store", R"doc(
The byte-level store under aicache.django.AicacheCache: full keys, bytes values.
Timeouts are seconds; None never expires; zero or negative removes.
Calls on Redis release the GIL. Fork-safe like AssistantCache.
)doc")
      .def_static(
          "memory",
          [](std::size_t max_bytes, std::size_t max_entries) {
            MemoryStoreOptions options;
            options.max_bytes = max_bytes;
            options.max_entries = max_entries;
            return std::make_unique<PyStore>(options);
          },
          py::kw_only(), py::arg("max_bytes") = std::size_t{256u << 20},
          py::arg("max_entries") = std::size_t{1'000'000}, "A new in-process memory store.")
      .def_static(
          "redis",
          [](const std::string& url, std::optional<std::string> password, std::size_t pool_size,
             double socket_timeout, double connect_timeout, py::object tls_ca_file,
             py::object tls_cert_file, py::object tls_key_file, bool tls_verify,
             py::object sentinels, py::object sentinel_master, py::object sentinel_password,
             py::object sentinel_username, py::object sentinel_tls, py::object cluster_nodes,
             py::object read_from_replicas) {
            RedisTopology topology =
                topology_args(tls_ca_file, tls_cert_file, tls_key_file, tls_verify, sentinels,
                              sentinel_master, sentinel_password, sentinel_username,
                              sentinel_tls, cluster_nodes, read_from_replicas);
            RedisStoreOptions options;
            options.endpoint = value_or_raise(parse_redis_url(url));
            if (password) options.endpoint.password = *password;
            options.tls = std::move(topology.tls);
            options.sentinel = std::move(topology.sentinel);
            options.cluster_nodes = std::move(topology.cluster_nodes);
            options.read_from_replicas = topology.read_from_replicas;
            if (pool_size == 0) throw py::value_error("pool_size must be positive");
            options.pool_size = pool_size;
            options.socket_timeout = seconds_to_ms(socket_timeout, "socket_timeout");
            options.connect_timeout = seconds_to_ms(connect_timeout, "connect_timeout");
            return std::make_unique<PyStore>(options);
          },
          py::arg("url"), py::kw_only(), py::arg("password") = py::none(),
          py::arg("pool_size") = 50, py::arg("socket_timeout") = 1.0,
          py::arg("connect_timeout") = 1.0, py::arg("tls_ca_file") = py::none(),
          py::arg("tls_cert_file") = py::none(), py::arg("tls_key_file") = py::none(),
          py::arg("tls_verify") = true, py::arg("sentinels") = py::none(),
          py::arg("sentinel_master") = py::none(), py::arg("sentinel_password") = py::none(),
          py::arg("sentinel_username") = py::none(), py::arg("sentinel_tls") = py::none(),
          py::arg("cluster_nodes") = py::none(), py::arg("read_from_replicas") = py::bool_(false),
          "A Redis store (connects once to check the URL). url: redis://, rediss:// (TLS) or "
          "unix://. TLS, Sentinel and Cluster arguments as AssistantCache's (with sentinels or "
          "cluster_nodes, url gives only the user, password and db). Raises "
          "aicache.ConfigError (naming the argument) or aicache.StoreError.")
      .def("get", &PyStore::get, py::arg("key"))
      .def("get_many", &PyStore::get_many, py::arg("keys"))
      .def("set", &PyStore::set, py::arg("key"), py::arg("value"), py::arg("timeout"))
      .def("set_many", &PyStore::set_many, py::arg("entries"), py::arg("timeout"))
      .def("add", &PyStore::add, py::arg("key"), py::arg("value"), py::arg("timeout"))
      .def("delete", &PyStore::remove, py::arg("key"))
      .def("delete_many", &PyStore::remove_many, py::arg("keys"))
      .def("touch", &PyStore::touch, py::arg("key"), py::arg("timeout"))
      .def("incr", &PyStore::incr, py::arg("key"), py::arg("delta") = 1)
      .def("ttl", &PyStore::ttl, py::arg("key"))
      .def("exists", &PyStore::exists, py::arg("key"))
      .def("clear", &PyStore::clear, py::arg("prefix"))
      .def("stats", &PyStore::stats)
      .def_property_readonly("process_local", &PyStore::process_local);
  py::object store_class = m.attr("Store");
  for (PyMethodDef* def : {&store_get_decoded_def, &store_set_packed_def}) {
    py::object method = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(store_class.ptr()), def));
    if (!method) throw py::error_already_set();
    store_class.attr(def->ml_name) = method;
  }
}
