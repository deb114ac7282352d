// A temporary directory for a test, removed with everything in it when the
// object goes out of scope.
#pragma once

#include <filesystem>
#include <string_view>

namespace aicache::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  // Writes `contents` to path()/name and returns the full path.
  std::filesystem::path write(std::string_view name, std::string_view contents) const;

 private:
  std::filesystem::path path_;
};

}  // namespace aicache::testing
