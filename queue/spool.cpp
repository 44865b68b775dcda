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
#include <optional>
#include <set>

#include "common/util/io.hpp"
#include "common/util/log.hpp"
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

// The CRC-32 a commit record gives for the message.
Result<uint32_t> crc_of_message(const MessageData& message) {
  uint32_t crc = 0;
  const Status read = read_message(message, [&crc](std::string_view chunk) {
    crc = extend_crc(crc, chunk);
    return ok_status();
  });
  if (!read.ok()) return read.error();
  return crc;
}

// The envelope in a data file's commit record; nullopt when the file ends in no footer (never
// committed), an error when the record fails its checks.
Result<std::optional<Envelope>> read_commit_record(int data_fd) {
  struct stat st {};
  if (fstat(data_fd, &st) != 0) return errno_error("fstat");
  if (!S_ISREG(st.st_mode)) return make_error("its data is not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kCommitFooterSize) return std::optional<Envelope>();
  std::string footer_bytes(kCommitFooterSize, '\0');
  if (pread(data_fd, footer_bytes.data(), kCommitFooterSize,
            static_cast<off_t>(file_size - kCommitFooterSize)) !=
      static_cast<ssize_t>(kCommitFooterSize))
    return errno_error("read its commit footer");
  const std::optional<CommitFooter> footer = parse_commit_footer(footer_bytes);
  if (!footer) return std::optional<Envelope>();
  const uint64_t record_end = file_size - kCommitFooterSize;
  if (footer->size > record_end || record_end - footer->size > kMaxEnvelopeBytes)
    return make_error("its commit footer gives a size of " + std::to_string(footer->size) +
                      " bytes in a file of " + std::to_string(file_size));
  std::string text(static_cast<size_t>(record_end - footer->size), '\0');
  if (!text.empty() && pread(data_fd, text.data(), text.size(), static_cast<off_t>(footer->size)) !=
                           static_cast<ssize_t>(text.size()))
    return errno_error("read its commit record");
  Result<Envelope> envelope = decode_envelope(text);
  if (!envelope.ok()) return make_error("its commit record: " + envelope.error().message);
  if (envelope->size != footer->size) return make_error("its commit record gives two sizes");
  const Result<uint32_t> crc = crc_of_message({data_fd, footer->size});
  if (!crc.ok()) return crc.error();
  if (crc.value() != footer->message_crc)
    return make_error("its data does not match the CRC its commit record gives");
  return std::optional<Envelope>(std::move(envelope).value());
}

// Sizes the message, checks its envelope and appends the commit record.
Status seal(Envelope& envelope, int data_fd) {
  if (!valid_queue_id(envelope.id)) return make_error("bad queue id");
  struct stat st {};
  if (fstat(data_fd, &st) != 0) return errno_error("fstat");
  envelope.size = static_cast<uint64_t>(st.st_size);
  if (Status valid = validate_envelope(envelope); !valid.ok()) return valid.error();
  // Read back from the page cache: a few microseconds for most messages, well under the flush
  // for big ones.
  const Result<uint32_t> crc = crc_of_message({data_fd, envelope.size});
  if (!crc.ok()) return crc.error();
  return pwrite_all(data_fd, encode_commit_record(envelope, crc.value()), envelope.size);
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
  auto gone = [&](const std::string& name) {
    if (unlinkat(queue_.get(), name.c_str(), 0) == 0) ++r.leftovers;
  };
  auto set_aside = [&](const std::string& id, const std::string& why) {
    log::error("message %s is corrupt (%s); moved to corrupt/", id.c_str(), why.c_str());
    for (const char* suffix : {".env", ".msg"}) {
      const std::string name = id + suffix;
      renameat(queue_.get(), name.c_str(), corrupt_.get(), name.c_str());
    }
    ++r.corrupt;
  };
  auto exists = [&](const std::string& name) {
    struct stat st {};
    return fstatat(queue_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  };
  const std::vector<std::string> names = list(queue_.get());
  std::set<std::string> settled;  // by their envelope file
  // An envelope update interrupted before its rename left a .new file: the old one holds.
  for (const std::string& name : names)
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".new") == 0) gone(name);
  // Envelope files: a message's state since a delivery changed it.
  for (const std::string& name : names) {
    const std::string id = id_of(name, ".env");
    if (id.empty()) continue;
    UniqueFd fd(openat(queue_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    Result<std::string> text =
        fd ? read_all(fd.get(), kMaxEnvelopeBytes) : Result<std::string>(errno_error("open"));
    Result<Envelope> envelope =
        text.ok() ? decode_envelope(text.value()) : Result<Envelope>(text.error());
    // Empty or cut short: an older version's spare, or its commit that never finished (no
    // 250 was given). The data file decides below.
    if (text.ok() && !envelope.ok() && is_truncated(envelope.error())) {
      unlinkat(queue_.get(), name.c_str(), 0);
      continue;
    }
    settled.insert(id);
    if (!envelope.ok() || envelope->id != id) {
      set_aside(
          id, !envelope.ok() ? envelope.error().message : "envelope names message " + envelope->id);
      continue;
    }
    // Its data file went first, its removal cut short here: finish it.
    if (!exists(id + ".msg")) {
      gone(name);
      continue;
    }
    r.committed.push_back(id);
    r.envelopes.push_back(std::move(envelope).value());
  }
  // Data files whose message has no envelope file: committed if their commit record says so.
  for (const std::string& name : names) {
    const std::string id = id_of(name, ".msg");
    if (id.empty() || settled.contains(id)) continue;
    UniqueFd fd(openat(queue_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    Result<std::optional<Envelope>> record =
        fd ? read_commit_record(fd.get())
           : Result<std::optional<Envelope>>(errno_error("open its data"));
    if (!record.ok()) {
      set_aside(id, record.error().message);
    } else if (!record->has_value()) {
      // A spare, or a message being received or committed: no 250 was given. (A spare is
      // no message: it goes without being counted.)
      struct stat st {};
      const bool had_data = fstat(fd.get(), &st) == 0 && st.st_size > 0;
      if (unlinkat(queue_.get(), name.c_str(), 0) == 0 && had_data) ++r.leftovers;
    } else if (record->value().id != id) {
      set_aside(id, "its commit record names message " + record->value().id);
    } else {
      r.committed.push_back(id);
      r.envelopes.push_back(std::move(*record.value()));
    }
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
    return NewMessage{std::move(id), std::move(ours), std::move(theirs), false};
  }
  return make_error("no free queue id after 8 attempts");
}

void Spool::discard(const std::string& id) {
  if (!valid_queue_id(id)) return;
  unlinkat(queue_.get(), (id + ".msg").c_str(), 0);
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

void Spool::commit(std::span<Commit> batch) {
  std::vector<int> fds;
  for (Commit& c : batch) {
    c.status = seal(*c.envelope, c.files->ours.get());
    if (c.status.ok()) fds.push_back(c.files->ours.get());
  }
  if (fds.empty()) return;
  // One flush over the messages still going; its failure fails each of them.
  Status synced = sync_files(fds);
  bool names_pending = false;
  for (const Commit& c : batch) names_pending = names_pending || !c.files->names_durable;
  if (synced.ok() && names_pending) synced = sync_queue_dir();
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

Result<bool> Spool::remove(const std::string& id) {
  if (!valid_queue_id(id)) return make_error("bad queue id");
  if (unlinkat(queue_.get(), (id + ".msg").c_str(), 0) != 0) return errno_error("unlink");
  struct stat st {};
  return fstatat(queue_.get(), (id + ".env").c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Status Spool::remove_envelope(const std::string& id) {
  if (!valid_queue_id(id)) return make_error("bad queue id");
  if (unlinkat(queue_.get(), (id + ".env").c_str(), 0) != 0) return errno_error("unlink");
  return ok_status();
}

Status Spool::sync_queue_dir() {
  if (fsync(queue_.get()) != 0) return errno_error("fsync queue/");
  return ok_status();
}

}  // namespace postern::queue
