#include "aicache/version.h"

namespace aicache {

std::string_view version() noexcept { return kVersion; }

}  // namespace aicache
