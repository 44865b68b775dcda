// mbox delivery; see mbox.hpp.
#include "mda/mbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::mda {
namespace {

// Lock attempts before the delivery is deferred: a reader holding the box keeps its mail
// queued, and the LMTP and mbox deliveries behind it wait a second at most.
constexpr int kLockAttempts = 20;
constexpr useconds_t kLockPause = 50000;

// A dotlock in the (checked) mailbox directory.
class DotLock {
 public:
  DotLock(int dir, std::string name, std::string path)
      : dir_(dir), name_(std::move(name)), path_(std::move(path)) {}
  ~DotLock() {
    if (held_) unlinkat(dir_, name_.c_str(), 0);
  }
  DotLock(const DotLock&) = delete;
  DotLock& operator=(const DotLock&) = delete;
  Status acquire() {
    for (int i = 0; i < kLockAttempts; ++i) {
      UniqueFd fd(openat(dir_, name_.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
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
  int dir_;
  std::string name_;
  std::string path_;
  bool held_ = false;
};

// The mailbox's directory, where its dotlock goes. Whoever may rename entries in it may swap
// the mailbox or steal the lock: it must be owned by root or by the delivering user, and
// writable by everyone only with the sticky bit (/tmp, some systems' /var/mail).
Result<UniqueFd> open_mailbox_directory(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_error("mailbox directory " + dir);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return errno_error("mailbox directory " + dir);
  if (st.st_uid != 0 && st.st_uid != geteuid())
    return make_error("mailbox directory " + dir + " is owned by uid " + std::to_string(st.st_uid) +
                      ", neither root nor the recipient");
  if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0)
    return make_error("mailbox directory " + dir +
                      " is writable by everyone without the sticky bit");
  return fd;
}

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

  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 == path.size())
    return make_error("mailbox " + path + " is not a file path");
  const std::string name = path.substr(slash + 1);
  Result<UniqueFd> dir = open_mailbox_directory(slash == 0 ? "/" : path.substr(0, slash));
  if (!dir.ok()) return dir.error();
  DotLock dotlock(dir.value().get(), name + ".lock", path + ".lock");
  if (Status st = dotlock.acquire(); !st.ok()) return st;
  // Never through a link, never blocking on a FIFO; then the file itself must be the
  // recipient's own mailbox: a regular file of the delivering user (the recipient, or the
  // virtual user for virtual mailboxes) with no other name, which a hard link made by someone
  // else (into a file this user may write) would have.
  UniqueFd box(openat(dir.value().get(), name.c_str(),
                      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
  if (!box)
    return errno == ELOOP ? make_error(path + " is a symbolic link") : errno_error("open " + path);
  struct stat st {};
  if (fstat(box.get(), &st) != 0) return errno_error("fstat " + path);
  if (!S_ISREG(st.st_mode)) return make_error(path + " is not a regular file");
  if (st.st_uid != geteuid())
    return make_error(path + " is owned by uid " + std::to_string(st.st_uid) +
                      ", not by the recipient (uid " + std::to_string(geteuid()) + ")");
  if (st.st_nlink != 1)
    return make_error(path + " has " + std::to_string(st.st_nlink) + " links, not 1");
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  int attempt = 0;
  while (fcntl(box.get(), F_SETLK, &lock) != 0) {
    if ((errno != EAGAIN && errno != EACCES) || ++attempt >= kLockAttempts)
      return make_error("mailbox is locked (" + path + ")");
    usleep(kLockPause);
  }
  // Where this message starts: another writer may have appended before the lock was ours.
  const off_t before = lseek(box.get(), 0, SEEK_END);
  if (before < 0) return errno_error("lseek " + path);
  Status written = write_all(box.get(), entry);
  if (written.ok() && fsync(box.get()) != 0) written = errno_error("fsync " + path);
  // Half a message would corrupt every later one: cut it off.
  if (!written.ok()) (void)!ftruncate(box.get(), before);
  return written;
}

}  // namespace postern::mda
