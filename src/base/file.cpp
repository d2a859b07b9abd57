#include "base/file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

namespace ctrust {

namespace fs = std::filesystem;

uint64_t require_regular_file(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("{}: cannot open {}: {}", path, what, std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("{}: {} is a folder, expected a file", path, what);
  if (!S_ISREG(st.st_mode)) fail("{}: {} is not a regular file (a device, FIFO or socket)", path, what);
  return uint64_t(st.st_size);
}

std::string read_regular_file(const std::string& path, const char* what, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open {}: {}", path, what, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: {} is not a regular file (a folder, device, FIFO or socket)", path, what);
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    fail("{}: {} is {} bytes, more than the limit of {} bytes", path, what, size, max_bytes);
  }
  std::string out(size_t(size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot read {}: {}", path, what, std::strerror(e));
    }
    if (r == 0) break;  // the file shrank while being read
    got += size_t(r);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

static std::string parent_dir(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

void check_output_path(const std::string& path) {
  if (path.empty()) fail("no output file given");
  const std::string dir = parent_dir(path);
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail("{}: cannot write: folder {} does not exist", path, dir);
  if (!fs::is_directory(dir, ec)) fail("{}: cannot write: {} is not a folder", path, dir);
  if (fs::is_directory(path, ec)) fail("{}: is a folder, expected an output file name", path);
  // access() honours read-only file systems even for root.
  if (::access(dir.c_str(), W_OK) != 0) fail("{}: cannot write in {}: {}", path, dir, std::strerror(errno));
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  check_output_path(path);
#ifdef O_TMPFILE
  if (::access("/proc/self/fd", X_OK) == 0) fd_ = ::open(parent_dir(path).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
#endif
  if (fd_ < 0) {  // no O_TMPFILE on this file system: a named temporary file
    tmp_ = path + ".tmp." + std::to_string(::getpid());
    fd_ = ::open(tmp_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0666);
    if (fd_ < 0) fail("{}: cannot create: {}", tmp_, std::strerror(errno));
  }
  fp_ = ::fdopen(fd_, "wb");
  if (!fp_) {
    int e = errno;
    ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    fail("{}: cannot open for writing: {}", path, std::strerror(e));
  }
}

AtomicFile::~AtomicFile() {
  if (fp_) std::fclose(fp_);
  if (!done_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::commit() {
  auto bad = [&](const char* step) {
    int e = errno;
    fail("{}: write failed ({}): {}", path_, step, std::strerror(e));
  };
  if (std::fflush(fp_) != 0) bad("flush");
  if (::fsync(fd_) != 0) bad("fsync");
  std::string named = tmp_;
  if (named.empty()) {  // give the unnamed file a name next to the target, then rename it over the target
    named = path_ + ".tmp." + std::to_string(::getpid());
    ::unlink(named.c_str());
    const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, named.c_str(), AT_SYMLINK_FOLLOW) != 0) bad("link");
    tmp_ = named;  // removed by the destructor if the rename fails
  }
  if (::rename(named.c_str(), path_.c_str()) != 0) bad("rename");
  done_ = true;
  const int closed = std::fclose(fp_);
  fp_ = nullptr;
  if (closed != 0) bad("close");
  int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace ctrust
