// Maildir delivery; see maildir.hpp.
#include "mda/maildir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd.hpp"

namespace postern::mda {
namespace {

Error errno_error(const std::string& what) {
  return make_error(what + ": " + std::strerror(errno));
}

// mkdir -p, each level without following links.
Status make_dirs(const std::string& path) {
  size_t pos = 1;
  while (pos <= path.size()) {
    const size_t next = path.find('/', pos);
    const std::string prefix = path.substr(0, next == std::string::npos ? path.size() : next);
    if (mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + prefix);
    struct stat st {};
    if (lstat(prefix.c_str(), &st) != 0) return errno_error("lstat " + prefix);
    if (!S_ISDIR(st.st_mode)) return make_error(prefix + " is not a directory");
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return ok_status();
}

Status write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write");
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return ok_status();
}

}  // namespace

Result<std::string> maildir_for(std::string_view templ, std::string_view local_part) {
  if (local_part.empty() || local_part.size() > 64 || local_part == "." || local_part == "..")
    return make_error("unsafe mailbox name");
  std::string user;
  for (unsigned char c : local_part) {
    if (c < 0x21 || c == 0x7f || c == '/') return make_error("unsafe mailbox name");
    user += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  const size_t at = templ.find("%u");
  if (at == std::string_view::npos) return make_error("mailbox template without %u");
  return std::string(templ.substr(0, at)) + user + std::string(templ.substr(at + 2));
}

Result<std::string> deliver_to_maildir(const std::string& maildir, const std::string& header,
                                       int message_fd, const std::string& unique) {
  for (const char* sub : {"/tmp", "/new", "/cur"})
    if (Status st = make_dirs(maildir + sub); !st.ok()) return st.error();
  const std::string tmp = maildir + "/tmp/" + unique;
  UniqueFd out(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out) return errno_error("create " + tmp);
  Status written = write_all(out.get(), header.data(), header.size());
  char buf[65536];
  off_t offset = 0;
  while (written.ok()) {
    const ssize_t n = pread(message_fd, buf, sizeof buf, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      written = errno_error("read the message");
      break;
    }
    if (n == 0) break;
    offset += n;
    written = write_all(out.get(), buf, static_cast<size_t>(n));
  }
  // The data is on disk before its name appears in new/.
  if (written.ok() && fsync(out.get()) != 0) written = errno_error("fsync " + tmp);
  const std::string final_path = maildir + "/new/" + unique;
  if (written.ok() && rename(tmp.c_str(), final_path.c_str()) != 0)
    written = errno_error("rename into new/");
  if (!written.ok()) {
    unlink(tmp.c_str());
    return written.error();
  }
  // The rename is durable once new/ is.
  UniqueFd dir(open((maildir + "/new").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || fsync(dir.get()) != 0) return errno_error("fsync " + maildir + "/new");
  return final_path;
}

}  // namespace postern::mda
