// 32 threads on one RedisStore's pool against redis-benchmark with 32 clients,
// on the same redis-server in the same run.
//
//   redis_throughput_bench [--threads=32] [--ops=200000] [--size=150] [--rounds=3]
//
// Starts a redis-server on a free loopback port (tests/support/redis_server.cc;
// AICACHE_REDIS_SERVER picks another binary), then for each round:
//   1. redis-benchmark -h 127.0.0.1 -p PORT -c 32 -n 200000 -t get,set -d 150 --csv
//      (REDIS_BENCHMARK picks another binary): its SET and GET requests/s;
//   2. the same through aicache: 32 threads share one RedisStore (pool_size 50)
//      and run 200000 SETs of the 150-byte value to redis-benchmark's key
//      "key:__rand_int__" without expiry (the same command redis-benchmark
//      sends), then 200000 GETs of it; requests/s and per-op p50/p99.
// The figure of each is the median over the rounds (rounds alternate, so a
// burst of load on the machine hits both sides). Prints text lines, then one
// JSON line. Target (issue 3): aicache >= 80 % of redis-benchmark.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "aicache/redis_store.h"
#include "support/redis_server.h"

namespace aicache::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::size_t threads = 32;
  std::size_t ops = 200000;
  std::size_t size = 150;
  std::size_t rounds = 3;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name) -> std::optional<std::size_t> {
      if (!a.starts_with(name)) return std::nullopt;
      return static_cast<std::size_t>(std::strtoull(a.substr(name.size()).data(), nullptr, 10));
    };
    if (auto v = value("--threads=")) {
      o.threads = *v;
    } else if (auto v2 = value("--ops=")) {
      o.ops = *v2;
    } else if (auto v3 = value("--size=")) {
      o.size = *v3;
    } else if (auto v4 = value("--rounds=")) {
      o.rounds = *v4;
    } else {
      throw std::runtime_error(fmt::format(
          "unknown argument {}; usage: redis_throughput_bench [--threads=N] [--ops=N] "
          "[--size=BYTES] [--rounds=N]",
          a));
    }
  }
  if (o.threads == 0 || o.ops < o.threads || o.rounds == 0) {
    throw std::runtime_error("--threads, --ops and --rounds must be positive, ops >= threads");
  }
  return o;
}

struct Figures {
  double rps = 0;
  double p50_us = 0;
  double p99_us = 0;
};

struct RedisBenchmarkResult {
  Figures set;
  Figures get;
  std::string command;
};

// "SET","86956.52","0.197","0.040","0.183","0.303","0.407","1.039"
std::vector<std::string> CsvFields(const std::string& line) {
  std::vector<std::string> fields;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.push_back(std::move(cur));
      cur.clear();
    } else if (c != '\r' && c != '\n') {
      cur.push_back(c);
    }
  }
  fields.push_back(std::move(cur));
  return fields;
}

RedisBenchmarkResult RunRedisBenchmark(const Options& o, std::uint16_t port) {
  const char* binary = std::getenv("REDIS_BENCHMARK");
  RedisBenchmarkResult result;
  result.command = fmt::format("{} -h 127.0.0.1 -p {} -c {} -n {} -t get,set -d {} --csv",
                               binary != nullptr ? binary : "redis-benchmark", port, o.threads,
                               o.ops, o.size);
  FILE* pipe = ::popen((result.command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + result.command);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  const int rc = ::pclose(pipe);
  if (rc != 0) throw std::runtime_error(fmt::format("{} failed ({}): {}", result.command, rc, out));
  bool have_set = false;
  bool have_get = false;
  std::size_t pos = 0;
  while (pos < out.size()) {
    auto eol = out.find('\n', pos);
    if (eol == std::string::npos) eol = out.size();
    const auto f = CsvFields(out.substr(pos, eol - pos));
    pos = eol + 1;
    // test, rps, avg, min, p50, p95, p99, max (ms)
    if (f.size() < 7 || (f[0] != "SET" && f[0] != "GET")) continue;
    Figures fig{.rps = std::strtod(f[1].c_str(), nullptr),
                .p50_us = std::strtod(f[4].c_str(), nullptr) * 1000.0,
                .p99_us = std::strtod(f[6].c_str(), nullptr) * 1000.0};
    if (f[0] == "SET") {
      result.set = fig;
      have_set = true;
    } else {
      result.get = fig;
      have_get = true;
    }
  }
  if (!have_set || !have_get) throw std::runtime_error("cannot parse redis-benchmark: " + out);
  return result;
}

// `threads` threads share `store` and run `ops` operations in all; the wall
// time from the common start to the last finish gives requests/s.
template <class Op>
Figures RunThreads(const Options& o, Op op) {
  std::vector<std::vector<float>> samples(o.threads);
  std::barrier start(static_cast<std::ptrdiff_t>(o.threads + 1));
  std::barrier done(static_cast<std::ptrdiff_t>(o.threads + 1));
  std::atomic<std::uint64_t> failures{0};
  std::vector<std::jthread> workers;
  for (std::size_t t = 0; t < o.threads; ++t) {
    const std::size_t n = o.ops / o.threads + (t < o.ops % o.threads ? 1 : 0);
    workers.emplace_back([&, t, n] {
      auto& mine = samples[t];
      mine.reserve(n);
      // Warm up: every thread holds a connection before the clock starts,
      // as redis-benchmark connects its clients first.
      for (int i = 0; i < 20; ++i) {
        if (!op()) failures.fetch_add(1, std::memory_order_relaxed);
      }
      start.arrive_and_wait();
      for (std::size_t i = 0; i < n; ++i) {
        const auto t0 = Clock::now();
        if (!op()) failures.fetch_add(1, std::memory_order_relaxed);
        mine.push_back(std::chrono::duration<float, std::micro>(Clock::now() - t0).count());
      }
      done.arrive_and_wait();
    });
  }
  start.arrive_and_wait();
  const auto t0 = Clock::now();
  done.arrive_and_wait();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  workers.clear();
  if (failures.load() != 0) {
    throw std::runtime_error(fmt::format("{} operations failed", failures.load()));
  }
  std::vector<float> all;
  all.reserve(o.ops);
  for (auto& s : samples) all.insert(all.end(), s.begin(), s.end());
  auto at = [&](double q) {
    const auto k = std::min(all.size() - 1, static_cast<std::size_t>(q * all.size()));
    std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end());
    return static_cast<double>(all[k]);
  };
  return Figures{.rps = static_cast<double>(o.ops) / seconds, .p50_us = at(0.50),
                 .p99_us = at(0.99)};
}

Figures Median(std::vector<Figures> v) {
  auto med = [&](auto field) {
    std::vector<double> x;
    for (const auto& f : v) x.push_back(f.*field);
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  return Figures{.rps = med(&Figures::rps), .p50_us = med(&Figures::p50_us),
                 .p99_us = med(&Figures::p99_us)};
}

int Main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  testing::RedisServer server;

  auto endpoint = parse_redis_url(server.url());
  if (!endpoint) throw std::runtime_error(endpoint.error().to_string());
  RedisStoreOptions options;
  options.endpoint = *endpoint;
  options.pool_size = 50;
  auto made = make_redis_store(options);
  if (!made) throw std::runtime_error(made.error().to_string());
  Store& store = **made;

  const std::string key = "key:__rand_int__";  // redis-benchmark's key without -r
  const std::string value(o.size, 'x');

  std::vector<Figures> rb_set, rb_get, ai_set, ai_get;
  std::string rb_command;
  for (std::size_t round = 0; round < o.rounds; ++round) {
    const auto rb = RunRedisBenchmark(o, server.port());
    rb_command = rb.command;
    rb_set.push_back(rb.set);
    rb_get.push_back(rb.get);
    ai_set.push_back(RunThreads(o, [&] { return store.set(key, value, Ttl::never()).has_value(); }));
    ai_get.push_back(RunThreads(o, [&] {
      auto v = store.get(key);
      return v.has_value() && v->has_value() && (*v)->size() == value.size();
    }));
    fmt::print("round {}: redis-benchmark SET {:.0f}/s GET {:.0f}/s; aicache SET {:.0f}/s GET "
               "{:.0f}/s; ratio SET {:.1f} % GET {:.1f} %\n",
               round + 1, rb.set.rps, rb.get.rps, ai_set.back().rps, ai_get.back().rps,
               100 * ai_set.back().rps / rb.set.rps, 100 * ai_get.back().rps / rb.get.rps);
  }
  const Figures rs = Median(rb_set), rg = Median(rb_get), as = Median(ai_set),
                ag = Median(ai_get);
  const double set_ratio = as.rps / rs.rps;
  const double get_ratio = ag.rps / rg.rps;
  const double mix_rb = 2.0 / (1.0 / rs.rps + 1.0 / rg.rps);  // 50/50 get/set
  const double mix_ai = 2.0 / (1.0 / as.rps + 1.0 / ag.rps);
  const double mix_ratio = mix_ai / mix_rb;
  const bool pass = std::min(set_ratio, get_ratio) >= 0.80;

  fmt::print("redis-benchmark: {}\n", rb_command);
  fmt::print("aicache: {} threads, one RedisStore (pool_size 50), {} SETs then {} GETs of {} "
             "bytes, per round\n",
             o.threads, o.ops, o.ops, o.size);
  fmt::print("medians of {} rounds:\n", o.rounds);
  fmt::print("  SET  redis-benchmark {:>9.0f} req/s (p50 {:.0f} us, p99 {:.0f} us)\n", rs.rps,
             rs.p50_us, rs.p99_us);
  fmt::print("  SET  aicache         {:>9.0f} req/s (p50 {:.0f} us, p99 {:.0f} us)  ratio {:.1f} %\n",
             as.rps, as.p50_us, as.p99_us, set_ratio * 100);
  fmt::print("  GET  redis-benchmark {:>9.0f} req/s (p50 {:.0f} us, p99 {:.0f} us)\n", rg.rps,
             rg.p50_us, rg.p99_us);
  fmt::print("  GET  aicache         {:>9.0f} req/s (p50 {:.0f} us, p99 {:.0f} us)  ratio {:.1f} %\n",
             ag.rps, ag.p50_us, ag.p99_us, get_ratio * 100);
  fmt::print("  50/50 mix: redis-benchmark {:.0f} req/s, aicache {:.0f} req/s, ratio {:.1f} %\n",
             mix_rb, mix_ai, mix_ratio * 100);
  fmt::print("target: aicache >= 80 % of redis-benchmark for SET and GET: {}\n",
             pass ? "PASS" : "FAIL");
  auto json = [](const Figures& f) {
    return fmt::format(R"({{"rps":{:.0f},"p50_us":{:.1f},"p99_us":{:.1f}}})", f.rps, f.p50_us,
                       f.p99_us);
  };
  fmt::print(
      R"({{"bench":"redis_throughput","threads":{},"ops":{},"value_bytes":{},"rounds":{},)"
      R"("redis_benchmark":{{"set":{},"get":{}}},"aicache":{{"set":{},"get":{}}},)"
      R"("ratio":{{"set":{:.3f},"get":{:.3f},"mix":{:.3f}}},"target":0.8,"pass":{}}})"
      "\n",
      o.threads, o.ops, o.size, o.rounds, json(rs), json(rg), json(as), json(ag), set_ratio,
      get_ratio, mix_ratio, pass ? "true" : "false");
  return 0;
}

}  // namespace
}  // namespace aicache::bench

int main(int argc, char** argv) {
  try {
    return aicache::bench::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_throughput_bench: %s\n", e.what());
    return 1;
  }
}
