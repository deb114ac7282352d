#include "core/siphash.h"

#include <sys/random.h>

#include <cerrno>
#include <random>
#include <system_error>

namespace aicache::internal {

SipKey SipKey::from_bytes(const unsigned char (&bytes)[16]) noexcept {
  const char* p = reinterpret_cast<const char*>(bytes);
  return {siphash_detail::load_le64(p), siphash_detail::load_le64(p + 8)};
}

SipKey random_sip_key() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    // Flags 0: the urandom pool, blocking only until the kernel has seeded
    // it once after boot. A 16-byte read is never partial once seeded, but a
    // signal may still interrupt the wait for that first seeding.
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // ENOSYS (a kernel older than 3.17, or a seccomp filter)
    }
  }
  if (got < sizeof bytes) {
    // std::random_device reads the same kernel source another way
    // (/dev/urandom or a CPU instruction); it throws if it has none.
    std::random_device device;
    for (unsigned char& b : bytes) b = static_cast<unsigned char>(device());
  }
  return SipKey::from_bytes(bytes);
}

}  // namespace aicache::internal
