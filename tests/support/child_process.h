// Runs a program as a child process with its output captured, for tests that
// drive the real `aicache` binary.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace aicache::testing {

struct Outcome {
  int exit_code = -1;  // 128 + signal if it was killed
  std::string out;
  std::string err;
};

// fork + execve of `program` with `args`, stdout and stderr captured. The child
// has only `env` as its environment and `cwd` as its working directory; an
// alarm kills it after 30 s if it hangs (alarms survive execve). With
// `on_started`, that is called on another thread with the child's pid once it
// runs, while its output is being read (to talk to a server, then stop it).
Outcome run_child(const std::string& program, const std::vector<std::string>& args,
                  const std::filesystem::path& cwd, const std::vector<std::string>& env = {},
                  const std::function<void(pid_t)>& on_started = {});

}  // namespace aicache::testing
