// Internal: the one percent-encoder (RFC 3986), for every URL aicache builds:
// query values (the token platforms' app ids and secrets, the keys of
// `aicache --server`) and user info (a Redis URL's user and password).
//
// Only the unreserved characters (A-Z a-z 0-9 - . _ ~) are kept; every other
// byte becomes %XX with upper-case hex digits. Encoding more than a component
// strictly needs is always valid (RFC 3986, 2.1 and 6.2.2.2), so one rule
// serves every component: in user info it leaves no ':' '@' '/' to confuse a
// URL parser, in a query no '&' '=' '+' '#'. Bytes are encoded as they are;
// UTF-8 text becomes its bytes' escapes.
//
// Untrusted text in a log line or an error message goes through
// aicache::printable() (aicache/log.h), not through this.
#pragma once

#include <string>
#include <string_view>

namespace aicache::internal {

std::string percent_encode(std::string_view bytes);

}  // namespace aicache::internal
