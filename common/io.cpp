// Descriptor I/O loops; see io.hpp.
#include "common/io.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace postern {

Error errno_error(const std::string& what) {
  return make_error(what + ": " + std::strerror(errno));
}

Status write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return ok_status();
}

Result<std::string> read_all(int fd, size_t max_bytes) {
  std::string text;
  char buf[65536];
  for (off_t offset = 0;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read");
    }
    if (n == 0) return text;
    if (text.size() + static_cast<size_t>(n) > max_bytes)
      return make_error("larger than " + std::to_string(max_bytes) + " bytes");
    text.append(buf, static_cast<size_t>(n));
    offset += n;
  }
}

}  // namespace postern
