// mbox delivery; see mbox.hpp.
#include "mda/mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "common/fd.hpp"
#include "common/io.hpp"

namespace postern::mda {
namespace {

// Lock attempts before the delivery is deferred: a reader holding the box keeps its mail
// queued, and the LMTP and mbox deliveries behind it wait a second at most.
constexpr int kLockAttempts = 20;
constexpr useconds_t kLockPause = 50000;

class DotLock {
 public:
  explicit DotLock(std::string path) : path_(std::move(path)) {}
  ~DotLock() {
    if (held_) unlink(path_.c_str());
  }
  DotLock(const DotLock&) = delete;
  DotLock& operator=(const DotLock&) = delete;
  Status acquire() {
    for (int i = 0; i < kLockAttempts; ++i) {
      UniqueFd fd(open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
      if (fd) {
        held_ = true;
        return ok_status();
      }
      if (errno != EEXIST) return errno_error("dotlock " + path_);
      usleep(kLockPause);
    }
    return make_error("mailbox is locked (" + path_ + ")");
  }

 private:
  std::string path_;
  bool held_ = false;
};

}  // namespace

std::string mboxrd_escape(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 64);
  size_t pos = 0;
  while (pos < message.size()) {
    size_t end = message.find('\n', pos);
    const bool last = end == std::string_view::npos;
    std::string_view line = message.substr(pos, last ? std::string_view::npos : end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t quotes = line.find_first_not_of('>');
    if (quotes != std::string_view::npos && line.substr(quotes).starts_with("From ")) out += '>';
    out += line;
    out += '\n';
    if (last) break;
    pos = end + 1;
  }
  return out;
}

Status deliver_to_mbox(const std::string& path, const std::string& sender,
                       const std::string& header, const MessageData& data, time_t now) {
  // The message is read whole: mbox needs it escaped line by line anyway.
  // (Our own spool file, whose size was checked when it was received.)
  Result<std::string> message = read_message(data);
  if (!message.ok()) return make_error("reading the message: " + message.error().message);
  char date[32];
  tm utc{};
  gmtime_r(&now, &utc);
  strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &utc);
  const std::string entry = "From " + (sender.empty() ? std::string("MAILER-DAEMON") : sender) +
                            " " + date + "\n" + mboxrd_escape(header + message.value()) + "\n";

  DotLock dotlock(path + ".lock");
  if (Status st = dotlock.acquire(); !st.ok()) return st;
  UniqueFd box(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!box) return errno_error("open " + path);
  struct stat st {};
  if (fstat(box.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error(path + " is not a regular file");
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  int attempt = 0;
  while (fcntl(box.get(), F_SETLK, &lock) != 0) {
    if ((errno != EAGAIN && errno != EACCES) || ++attempt >= kLockAttempts)
      return make_error("mailbox is locked (" + path + ")");
    usleep(kLockPause);
  }
  const off_t before = st.st_size;
  Status written = write_all(box.get(), entry);
  if (written.ok() && fsync(box.get()) != 0) written = errno_error("fsync " + path);
  // Half a message would corrupt every later one: cut it off.
  if (!written.ok()) (void)!ftruncate(box.get(), before);
  return written;
}

}  // namespace postern::mda
