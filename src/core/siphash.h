// SipHash (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012):
// a keyed 64-bit hash of a byte string. Written from the paper's
// specification; tests/core/siphash_test.cc checks it against the published
// SipHash-2-4 vectors and against SipHash-1-3 figures from two independent
// implementations.
//
// Why keyed: a table indexed by an unkeyed (or fixed-seed) hash of keys that
// an attacker chooses can be filled with keys that all collide, so every
// lookup walks one chain. With a secret random key, finding collisions means
// breaking the PRF, not inverting a public function.
//
// SipHash-c-d runs c rounds per 8-byte message word and d finalisation
// rounds. Tables use SipHash-1-3 (the variant CPython 3.11+ and Rust's std use
// for the same purpose): fewer rounds, no known attack on it as a hash-table
// PRF; SipHash-2-4 is the paper's conservative choice and what the vectors
// are published for.
//
// Every function is defined for any length and any alignment of the data
// (loads go through memcpy) and gives the same result on any endianness.
//
// Thread safety: pure functions; random_sip_key() is safe to call from any
// thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace aicache::internal {

// A 128-bit SipHash key: k0 and k1 are the key's bytes 0..7 and 8..15 read
// little-endian, as in the paper.
struct SipKey {
  std::uint64_t k0 = 0;
  std::uint64_t k1 = 0;

  // The key from its 16 bytes, in the paper's byte order.
  static SipKey from_bytes(const unsigned char (&bytes)[16]) noexcept;
};

// A fresh key from the kernel's CSPRNG (getrandom(2); std::random_device if
// that system call is missing). Never a fixed or time-derived value. Throws
// (what std::random_device throws) only if the process has no source of
// randomness at all.
SipKey random_sip_key();

namespace siphash_detail {

inline std::uint64_t load_le64(const char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = std::byteswap(v);
  return v;
}

inline std::uint64_t load_le32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = std::byteswap(v);
  return v;
}

inline std::uint64_t byte_at(const char* p, std::size_t i) noexcept {
  return static_cast<std::uint64_t>(static_cast<unsigned char>(p[i]));
}

struct State {
  std::uint64_t v0, v1, v2, v3;

  void round() noexcept {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }

  template <int C>
  void compress(std::uint64_t m) noexcept {
    v3 ^= m;
    for (int i = 0; i < C; ++i) round();
    v0 ^= m;
  }
};

}  // namespace siphash_detail

// SipHash-C-D of `data` under `key`. Defined here rather than in siphash.cc
// so that the compiler sees it where it is used (the memory store's hit path)
// and may inline or specialise it; the hash of a short key costs little more
// than a call across translation units.
template <int C, int D>
inline std::uint64_t siphash(const SipKey& key, std::string_view data) noexcept {
  static_assert(C >= 1 && D >= 1);
  using namespace siphash_detail;
  // The initial state: the key XORed with "somepseudorandomlygeneratedbytes".
  State s{key.k0 ^ 0x736f6d6570736575ull, key.k1 ^ 0x646f72616e646f6dull,
          key.k0 ^ 0x6c7967656e657261ull, key.k1 ^ 0x7465646279746573ull};
  const char* p = data.data();
  const std::size_t n = data.size();
  const char* const end = p + (n & ~std::size_t{7});
  for (; p != end; p += 8) s.compress<C>(load_le64(p));

  // The last word: the 0..7 remaining bytes, and the length mod 256 in the
  // top byte. Overlapping loads place each byte at its little-endian
  // position without a byte loop (bytes loaded twice are the same bytes).
  const std::size_t r = n & 7;
  std::uint64_t last = static_cast<std::uint64_t>(n) << 56;
  if (r >= 4) {
    last |= load_le32(p) | (load_le32(p + r - 4) << (8 * (r - 4)));
  } else if (r > 0) {
    last |= byte_at(p, 0) | (byte_at(p, r / 2) << (8 * (r / 2))) | (byte_at(p, r - 1) << (8 * (r - 1)));
  }
  s.compress<C>(last);

  s.v2 ^= 0xff;
  for (int i = 0; i < D; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

inline std::uint64_t siphash13(const SipKey& key, std::string_view data) noexcept {
  return siphash<1, 3>(key, data);
}

inline std::uint64_t siphash24(const SipKey& key, std::string_view data) noexcept {
  return siphash<2, 4>(key, data);
}

}  // namespace aicache::internal
