// The spool on disk; see spool.hpp. Every name that goes into a path is a queue id checked by
// valid_queue_id: nothing from a peer ever becomes a path.
#include "queue/spool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/io.hpp"
#include "common/log.hpp"
#include "queue/envelope_file.hpp"

namespace postern::queue {
namespace {

UniqueFd open_area(int root, const char* name) {
  if (mkdirat(root, name, 0700) != 0 && errno != EEXIST) return UniqueFd();
  return UniqueFd(openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

// Names in a directory; "." and ".." left out.
std::vector<std::string> list(int dir_fd) {
  std::vector<std::string> names;
  UniqueFd copy(fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  DIR* dir = copy ? fdopendir(copy.get()) : nullptr;
  if (dir == nullptr) return names;
  copy.release();  // owned by dir now
  rewinddir(dir);
  while (const dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  return names;
}

// "<id>.msg" / "<id>.env" -> id, or empty when the name is no spool file.
std::string id_of(const std::string& name, const char* suffix) {
  if (name.size() != kQueueIdLength + 4 || name.compare(kQueueIdLength, 4, suffix) != 0) return {};
  std::string id = name.substr(0, kQueueIdLength);
  return valid_queue_id(id) ? id : std::string();
}

}  // namespace

Status Spool::open() {
  UniqueFd root(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return errno_error("cannot open the spool " + root_);
  queue_ = open_area(root.get(), "queue");
  corrupt_ = open_area(root.get(), "corrupt");
  if (!queue_ || !corrupt_) return errno_error("cannot prepare the spool areas in " + root_);
  incoming_.reset(openat(root.get(), "incoming", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  return ok_status();
}

Recovery Spool::recover() {
  Recovery r;
  // An older version's area for messages being received: nothing in it was answered 250.
  if (incoming_) {
    for (const std::string& name : list(incoming_.get())) {
      if (unlinkat(incoming_.get(), name.c_str(), 0) == 0) ++r.leftovers;
    }
  }
  const std::vector<std::string> names = list(queue_.get());
  for (const std::string& name : names) {
    const std::string id = id_of(name, ".env");
    if (id.empty()) continue;
    const std::string data = id + ".msg";
    UniqueFd fd(openat(queue_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    Result<std::string> text =
        fd ? read_all(fd.get(), kMaxEnvelopeBytes) : Result<std::string>(errno_error("open"));
    Result<Envelope> envelope =
        text.ok() ? decode_envelope(text.value()) : Result<Envelope>(text.error());
    // Empty or cut short: its commit never finished, so no 250 was given (the envelope is
    // durable before the answer). A spare made ahead of need (both files empty) goes
    // without a word; a message that was being received counts as a leftover.
    if (text.ok() && !envelope.ok() && is_truncated(envelope.error())) {
      struct stat st {};
      const bool had_data =
          fstatat(queue_.get(), data.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size > 0;
      unlinkat(queue_.get(), name.c_str(), 0);
      unlinkat(queue_.get(), data.c_str(), 0);
      if (had_data || !text->empty()) ++r.leftovers;
      continue;
    }
    struct stat st {};
    const bool data_ok =
        fstatat(queue_.get(), data.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    if (envelope.ok() && envelope->id == id && data_ok) {
      r.committed.push_back(id);
      r.envelopes.push_back(std::move(envelope).value());
      continue;
    }
    const std::string why = !envelope.ok()       ? envelope.error().message
                            : envelope->id != id ? "envelope names message " + envelope->id
                                                 : "its data file is missing";
    log::error("message %s is corrupt (%s); moved to corrupt/", id.c_str(), why.c_str());
    renameat(queue_.get(), name.c_str(), corrupt_.get(), name.c_str());
    renameat(queue_.get(), data.c_str(), corrupt_.get(), data.c_str());
    ++r.corrupt;
  }
  // Data without its envelope: the envelope's file was never made (or an older version's
  // commit stopped between its renames); no 250 was given. An envelope update interrupted
  // before its rename left a .new file: the old one holds.
  for (const std::string& name : names) {
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".new") == 0) {
      if (unlinkat(queue_.get(), name.c_str(), 0) == 0) ++r.leftovers;
      continue;
    }
    const std::string id = id_of(name, ".msg");
    if (id.empty()) continue;
    struct stat st {};
    const std::string env = id + ".env";
    if (fstatat(queue_.get(), env.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 &&
        unlinkat(queue_.get(), name.c_str(), 0) == 0)
      ++r.leftovers;
  }
  fsync(queue_.get());
  return r;
}

Result<NewMessage> Spool::create() {
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint8_t random[kQueueIdLength / 2];
    if (getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random))
      return errno_error("getrandom");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id;
    for (uint8_t b : random) {
      id += kHex[b >> 4];
      id += kHex[b & 15];
    }
    const std::string name = id + ".msg";
    UniqueFd ours(openat(queue_.get(), name.c_str(),
                         O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!ours) {
      if (errno == EEXIST) continue;
      return errno_error("cannot create a message file");
    }
    // Reopened write-only for smtp: it can add bytes but never read the spool back.
    UniqueFd theirs(openat(queue_.get(), name.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!theirs) {
      const Error e = errno_error("cannot reopen a message file");
      unlinkat(queue_.get(), name.c_str(), 0);
      return e;
    }
    // A fresh file only: whatever already sits at this name (it never should) is not ours
    // to write through, be it a FIFO or a link.
    UniqueFd envelope(openat(queue_.get(), (id + ".env").c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!envelope) {
      const Error e = errno_error("cannot create an envelope file");
      unlinkat(queue_.get(), name.c_str(), 0);
      return e;
    }
    return NewMessage{std::move(id), std::move(ours), std::move(theirs), std::move(envelope),
                      false};
  }
  return make_error("no free queue id after 8 attempts");
}

void Spool::discard(const std::string& id) {
  if (!valid_queue_id(id)) return;
  unlinkat(queue_.get(), (id + ".env").c_str(), 0);
  unlinkat(queue_.get(), (id + ".msg").c_str(), 0);
}

Status Spool::prepare(Envelope& envelope, int data_fd, int envelope_fd) {
  if (!valid_queue_id(envelope.id)) return make_error("bad queue id");
  struct stat st {};
  if (fstat(data_fd, &st) != 0) return errno_error("fstat");
  envelope.size = static_cast<uint64_t>(st.st_size);
  if (Status valid = validate_envelope(envelope); !valid.ok()) return valid.error();
  if (fstat(envelope_fd, &st) != 0) return errno_error("fstat envelope");
  if (!S_ISREG(st.st_mode)) return make_error("the envelope is not a regular file");
  return ok_status();
}

Status Spool::sync_files(std::span<const int> fds) {
#ifdef __linux__
  // A big batch shares one filesystem-wide flush: measured 3-4 ms for 50 messages against
  // 180-270 ms for 100 fdatasyncs one after another. A lone message is cheaper with its own,
  // since syncfs also flushes whatever else is dirty on the filesystem.
  if (fds.size() > kSyncfsBatch) {
    if (syncfs(queue_.get()) != 0) return errno_error("syncfs");
    return ok_status();
  }
#endif
  for (const int fd : fds)
    if (fdatasync(fd) != 0) return errno_error("fdatasync");
  return ok_status();
}

Status Spool::write_envelope(const Envelope& envelope, int envelope_fd) {
  // create()'s file, empty unless an earlier attempt failed half-way.
  struct stat st {};
  if (fstat(envelope_fd, &st) != 0) return errno_error("fstat envelope");
  if (st.st_size != 0 && (ftruncate(envelope_fd, 0) != 0 || lseek(envelope_fd, 0, SEEK_SET) != 0))
    return errno_error("truncate envelope");
  return write_all(envelope_fd, encode_envelope(envelope));
}

void Spool::commit(std::span<Commit> batch) {
  for (Commit& c : batch)
    c.status = prepare(*c.envelope, c.files->ours.get(), c.files->envelope.get());
  // One flush over the messages still going; its failure fails each of them.
  auto sync_step = [&](auto fd_of) {
    std::vector<int> fds;
    for (const Commit& c : batch)
      if (c.status.ok()) fds.push_back(fd_of(*c.files));
    if (fds.empty()) return;
    const Status synced = sync_files(fds);
    if (!synced.ok())
      for (Commit& c : batch)
        if (c.status.ok()) c.status = synced.error();
  };
  sync_step([](const NewMessage& m) { return m.ours.get(); });
  for (Commit& c : batch)
    if (c.status.ok()) c.status = write_envelope(*c.envelope, c.files->envelope.get());
  sync_step([](const NewMessage& m) { return m.envelope.get(); });
  bool names_pending = false;
  for (const Commit& c : batch) names_pending = names_pending || !c.files->names_durable;
  if (!names_pending) return;
  const Status synced = sync_queue_dir();
  if (!synced.ok())
    for (Commit& c : batch)
      if (c.status.ok()) c.status = synced.error();
}

Status Spool::commit(Envelope& envelope, const NewMessage& message) {
  Commit one{&envelope, &message, ok_status()};
  commit(std::span(&one, 1));
  return one.status;
}

Result<UniqueFd> Spool::open_message(const std::string& id) {
  if (!valid_queue_id(id)) return make_error("bad queue id");
  UniqueFd fd(openat(queue_.get(), (id + ".msg").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return errno_error("open message " + id);
  return fd;
}

Status Spool::update_envelope(const Envelope& envelope) {
  const std::string& id = envelope.id;
  if (Status valid = validate_envelope(envelope); !valid.ok()) return valid;
  const std::string next = id + ".env.new";
  const std::string env = id + ".env";
  unlinkat(queue_.get(), next.c_str(), 0);  // a leftover of a crash
  UniqueFd fd(openat(queue_.get(), next.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return errno_error("create " + next);
  if (Status s = write_all(fd.get(), encode_envelope(envelope)); !s.ok()) return s;
  if (fdatasync(fd.get()) != 0) return errno_error("fdatasync " + next);
  if (renameat(queue_.get(), next.c_str(), queue_.get(), env.c_str()) != 0)
    return errno_error("rename " + next);
  return ok_status();
}

Status Spool::remove(const std::string& id) {
  if (!valid_queue_id(id)) return make_error("bad queue id");
  // The envelope is what makes a message exist: it goes first.
  if (unlinkat(queue_.get(), (id + ".env").c_str(), 0) != 0) return errno_error("unlink");
  unlinkat(queue_.get(), (id + ".msg").c_str(), 0);
  return ok_status();
}

Status Spool::sync_queue_dir() {
  if (fsync(queue_.get()) != 0) return errno_error("fsync queue/");
  return ok_status();
}

}  // namespace postern::queue
