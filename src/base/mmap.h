// Read-only memory map of a whole file. Bounds are the caller's job: use size() before reading.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ctrust {

class MappedFile {
 public:
  // Throws ctrust::Error("<path>: cannot open: <reason>") on failure. An empty file maps to size 0.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ctrust
