#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace aicache::server {
namespace {

std::vector<std::string> to_key(std::initializer_list<std::string_view> values) {
  std::vector<std::string> key;
  key.reserve(values.size());
  for (std::string_view v : values) key.emplace_back(v);
  return key;
}

Labels zip(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  Labels labels;
  for (std::size_t i = 0; i < names.size() && i < values.size(); ++i) {
    labels.emplace_back(names[i], values[i]);
  }
  return labels;
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return fmt::format("{}", static_cast<std::int64_t>(value));
  }
  return fmt::format("{}", value);
}

void TextWriter::family(std::string_view name, std::string_view help, std::string_view type) {
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, type);
}

void TextWriter::name_and_labels(std::string_view name, const Labels& labels) {
  out_ += name;
  if (labels.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += label;
    out_ += "=\"";
    out_ += escape_label_value(value);
    out_ += '"';
  }
  out_ += '}';
}

void TextWriter::sample(std::string_view name, const Labels& labels, double value) {
  name_and_labels(name, labels);
  out_ += ' ';
  out_ += format_value(value);
  out_ += '\n';
}

void TextWriter::sample(std::string_view name, const Labels& labels, std::uint64_t value) {
  name_and_labels(name, labels);
  out_ += fmt::format(" {}\n", value);
}

// --- CounterFamily ---------------------------------------------------------------

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

void CounterFamily::inc(std::initializer_list<std::string_view> label_values, std::uint64_t by) {
  auto key = to_key(label_values);
  std::lock_guard lock(mutex_);
  series_[std::move(key)] += by;
}

std::uint64_t CounterFamily::value(std::initializer_list<std::string_view> label_values) const {
  auto key = to_key(label_values);
  std::lock_guard lock(mutex_);
  auto it = series_.find(key);
  return it == series_.end() ? 0 : it->second;
}

void CounterFamily::render(std::string& out) const {
  TextWriter writer(out);
  writer.family(name_, help_, "counter");
  std::lock_guard lock(mutex_);
  for (const auto& [values, count] : series_) {
    writer.sample(name_, zip(label_names_, values), count);
  }
}

// --- HistogramFamily ---------------------------------------------------------------

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names, std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
}

void HistogramFamily::observe(std::initializer_list<std::string_view> label_values, double value) {
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  auto key = to_key(label_values);
  std::lock_guard lock(mutex_);
  Series& series = series_[std::move(key)];
  if (series.counts.empty()) series.counts.assign(bounds_.size() + 1, 0);
  ++series.counts[bucket];
  series.sum += value;
  ++series.count;
}

void HistogramFamily::render(std::string& out) const {
  TextWriter writer(out);
  writer.family(name_, help_, "histogram");
  const std::string bucket_name = name_ + "_bucket";
  const std::string sum_name = name_ + "_sum";
  const std::string count_name = name_ + "_count";
  std::lock_guard lock(mutex_);
  for (const auto& [values, series] : series_) {
    Labels labels = zip(label_names_, values);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
      cumulative += series.counts[i];
      const std::string le =
          i < bounds_.size() ? format_value(bounds_[i]) : std::string("+Inf");
      Labels with_le = labels;
      with_le.emplace_back("le", le);
      writer.sample(bucket_name, with_le, cumulative);
    }
    writer.sample(sum_name, labels, series.sum);
    writer.sample(count_name, labels, series.count);
  }
}

std::vector<double> latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
}

}  // namespace aicache::server
