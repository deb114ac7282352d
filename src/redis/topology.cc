#include "redis/topology.h"

#include <utility>

namespace aicache::redis {

Node::Node(ConnectionOptions connection, std::size_t pool_size, std::chrono::milliseconds pool_wait,
           std::size_t near_cache_max_bytes, std::shared_ptr<const Clock> clock,
           const TrackerOptions& tracker_template)
    : endpoint(connection.endpoint.redacted_url()),
      pool(std::move(connection), pool_size, pool_wait) {
  if (near_cache_max_bytes == 0) return;
  near = std::make_unique<NearCache>(near_cache_max_bytes, std::move(clock));
  TrackerOptions options = tracker_template;
  options.connection = pool.options();
  tracker = std::make_unique<Tracker>(std::move(options), *near);
}

Node::~Node() = default;

std::shared_ptr<Node> NodeFactory::make(const RedisEndpoint& endpoint, bool read_only) const {
  ConnectionOptions options = connection;
  options.endpoint = endpoint;
  options.read_only = read_only;
  return std::make_shared<Node>(std::move(options), pool_size, pool_wait, near_cache_max_bytes,
                                clock, tracker);
}

std::vector<KeyGroup> Topology::partition(std::span<const std::string_view> keys) {
  std::vector<KeyGroup> groups;
  if (keys.empty()) return groups;
  KeyGroup all{.node = node_for(keys.front()), .indexes = {}};
  all.indexes.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) all.indexes.push_back(i);
  groups.push_back(std::move(all));
  return groups;
}

std::shared_ptr<Node> Topology::reader_for(std::string_view key) { return node_for(key); }

std::vector<KeyGroup> Topology::partition_reads(std::span<const std::string_view> keys) {
  return partition(keys);
}

std::vector<std::shared_ptr<Node>> Topology::nodes() { return primaries(); }

void Topology::for_each_near(std::string_view key, const std::function<void(NearCache&)>& fn) {
  const std::shared_ptr<Node> node = node_for(key);
  if (node->near) fn(*node->near);
}

Reroute Topology::after_failure(Node&, std::string_view, const RedisFailure&) { return {}; }

std::shared_ptr<Node> Topology::successor(std::shared_ptr<Node> node) { return node; }

void Topology::describe(std::map<std::string, std::string>&) const {}

namespace {

class SingleTopology final : public Topology {
 public:
  explicit SingleTopology(std::shared_ptr<Node> node) : node_(std::move(node)) {}

  std::shared_ptr<Node> node_for(std::string_view) override { return node_; }
  std::vector<std::shared_ptr<Node>> primaries() override { return {node_}; }
  std::string_view kind() const noexcept override { return "single"; }

 private:
  const std::shared_ptr<Node> node_;
};

}  // namespace

std::unique_ptr<Topology> make_single_topology(const NodeFactory& factory,
                                               const RedisEndpoint& endpoint) {
  return std::make_unique<SingleTopology>(factory.make(endpoint));
}

}  // namespace aicache::redis
