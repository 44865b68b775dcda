// Descriptor I/O loops; see io.hpp.
#include "common/util/io.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

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

Status pwrite_all(int fd, std::string_view bytes, uint64_t offset) {
  while (!bytes.empty()) {
    const ssize_t n = pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return ok_status();
}

Status read_all(int fd, size_t max_bytes, std::string& into) {
  char buf[65536];
  const size_t start = into.size();
  Status status = ok_status();
  for (off_t offset = 0;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = errno_error("read");
      break;
    }
    if (n == 0) break;
    into.append(buf, static_cast<size_t>(n));
    if (into.size() - start > max_bytes) {
      status = make_error("larger than " + std::to_string(max_bytes) + " bytes");
      break;
    }
    offset += n;
  }
  explicit_bzero(buf, sizeof buf);
  return status;
}

Result<std::string> read_all(int fd, size_t max_bytes) {
  std::string text;
  if (Status read = read_all(fd, max_bytes, text); !read.ok()) return read.error();
  return text;
}

Result<size_t> read_message_at(const MessageData& message, uint64_t offset, char* buf, size_t len) {
  if (offset >= message.size) return size_t{0};
  const size_t want = static_cast<size_t>(std::min<uint64_t>(len, message.size - offset));
  for (;;) {
    const ssize_t n = pread(message.fd, buf, want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read the message");
    if (n == 0 && want > 0)
      return make_error("the file ends early, at byte " + std::to_string(offset) + " of " +
                        std::to_string(message.size));
    return static_cast<size_t>(n);
  }
}

Status read_message(const MessageData& message,
                    const std::function<Status(std::string_view)>& each) {
  char buf[65536];
  for (uint64_t offset = 0; offset < message.size;) {
    const Result<size_t> n = read_message_at(message, offset, buf, sizeof buf);
    if (!n.ok()) return n.error();
    offset += n.value();
    if (Status st = each(std::string_view(buf, n.value())); !st.ok()) return st;
  }
  return ok_status();
}

Result<std::string> read_message(const MessageData& message) {
  std::string text;
  text.reserve(static_cast<size_t>(message.size));
  const Status st = read_message(message, [&text](std::string_view chunk) {
    text += chunk;
    return ok_status();
  });
  if (!st.ok()) return st.error();
  return text;
}

}  // namespace postern
