// Redis Cluster's pure parts: which of the 16384 hash slots a key belongs
// to, and node addresses ("host:port").
//
// As the Redis Cluster specification defines it: CRC16 (XMODEM: polynomial
// 0x1021, initial value 0, no reflection) of the key, modulo 16384. When the
// key holds a hash tag, only the tag is hashed: the bytes between the first
// '{' and the first '}' after it, if that span is not empty. So
// "{user1000}.following" and "{user1000}.followers" share a slot, while
// "{}x" and "a{}b{c}" hash whole (an empty first tag is no tag).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aicache::redis {

inline constexpr std::uint16_t kClusterSlots = 16384;

// CRC16/XMODEM of `data`.
std::uint16_t crc16(std::string_view data) noexcept;

// The part of `key` that is hashed: its hash tag, or the whole key.
std::string_view hash_tag(std::string_view key) noexcept;

// The key's slot, 0..16383.
std::uint16_t key_slot(std::string_view key) noexcept;

// A node's address as Redis Cluster writes it (MOVED, CLUSTER NODES) and as
// the settings give seeds: "host:port", "[v6]:port" or "v6:port" (the last
// colon separates the port). The host may be empty (a MOVED naming the
// node's own, unknown, address); the port must be 1..65535.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
std::optional<HostPort> parse_host_port(std::string_view text);

// "host:port" again ("[v6]:port" for an IPv6 address): the key under which
// a topology keeps its nodes.
std::string host_port_key(std::string_view host, std::uint16_t port);

}  // namespace aicache::redis
