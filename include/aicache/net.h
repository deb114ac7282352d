// Where a URL points: enough to tell loopback from the network, for the
// settings that must not send a secret across the network in clear text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace aicache {

// The host of "scheme://[userinfo@]host[:port][/path...]": "127.0.0.1",
// "::1" (without the brackets), "example.com". nullopt when `url` has no
// "://" or an empty host.
std::optional<std::string> url_host(std::string_view url);

// True for "localhost" (any case), an IPv4 address in 127.0.0.0/8 and the
// IPv6 loopback (::1 in any spelling). Names that merely resolve to loopback,
// and "127.0.0.1.example.com", are not.
bool is_loopback_host(std::string_view host);

}  // namespace aicache
