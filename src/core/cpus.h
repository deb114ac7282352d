// How many CPUs this process may run on, for "one per core" defaults.
#pragma once

#include <cstddef>

namespace aicache::internal {

// The CPUs in this process's affinity mask (taskset, a container's cpuset),
// not the machine's: a service limited to 2 of 64 cores makes 2 I/O threads,
// not 64. At least 1; the machine's count if the mask cannot be read.
std::size_t usable_cpus() noexcept;

}  // namespace aicache::internal
