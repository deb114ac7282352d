// A small Prometheus registry: counters with labels, histograms with fixed
// buckets, and the text exposition format 0.0.4.
//
//   CounterFamily requests("aicache_http_requests_total", "HTTP requests.",
//                          {"route", "method", "status"});
//   requests.inc({"/v1/kv/{key}", "GET", "200"});
//   std::string text;
//   requests.render(text);
//
// Families the server computes at scrape time (store figures, token counters
// kept by the library) are written with TextWriter directly.
//
// Thread safety: inc() and observe() may be called from any thread while
// another renders.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aicache::server {

// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);
// Escapes HELP text: backslash and newline.
std::string escape_help(std::string_view help);

// Label names with their values, in order.
using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

// Writes families in the text format: a HELP and a TYPE line, then samples.
class TextWriter {
 public:
  explicit TextWriter(std::string& out) : out_(out) {}
  // type: "counter", "gauge" or "histogram".
  void family(std::string_view name, std::string_view help, std::string_view type);
  void sample(std::string_view name, const Labels& labels, double value);
  void sample(std::string_view name, const Labels& labels, std::uint64_t value);

 private:
  void name_and_labels(std::string_view name, const Labels& labels);
  std::string& out_;
};

// Formats a sample value: integers without a fraction, +Inf, -Inf, NaN.
std::string format_value(double value);

class CounterFamily {
 public:
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);
  // Adds `by` to the series with these label values (one per label name).
  void inc(std::initializer_list<std::string_view> label_values, std::uint64_t by = 1);
  // The current value of one series (0 if never incremented).
  std::uint64_t value(std::initializer_list<std::string_view> label_values) const;
  void render(std::string& out) const;

 private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  mutable std::mutex mutex_;
  // Keyed by the label values; ordered, so the output is stable.
  std::map<std::vector<std::string>, std::uint64_t, std::less<>> series_;  // guarded by mutex_
};

class HistogramFamily {
 public:
  // `bounds`: the upper bounds of the buckets, ascending; +Inf is implied.
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> bounds);
  void observe(std::initializer_list<std::string_view> label_values, double value);
  void render(std::string& out) const;

 private:
  struct Series {
    std::vector<std::uint64_t> counts;  // per bucket, not cumulative; last is +Inf
    double sum = 0;
    std::uint64_t count = 0;
  };
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, Series, std::less<>> series_;  // guarded by mutex_
};

// Latency buckets in seconds, from 100 µs to 10 s.
std::vector<double> latency_buckets();

}  // namespace aicache::server
