// Maildir delivery; see maildir.hpp.
#include "mda/maildir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>
#include <thread>

#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::mda {
namespace {

// From this many deliveries on, the work is shared by up to kMaxThreads threads.
constexpr size_t kParallelFrom = 64;
constexpr unsigned kMaxThreads = 4;

// fn(0) .. fn(n - 1), on several threads when n is large; fn must be safe to run
// concurrently for different indexes.
template <typename Fn>
void for_each_index(size_t n, const Fn& fn) {
  const unsigned threads =
      n < kParallelFrom ? 1 : std::clamp(std::thread::hardware_concurrency(), 1u, kMaxThreads);
  std::atomic<size_t> next = 0;
  auto work = [&] {
    for (size_t i = 0; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> helpers;
  for (unsigned t = 1; t < threads; ++t) {
    try {
      helpers.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // fewer threads: the work still gets done
    }
  }
  work();
  for (auto& t : helpers) t.join();
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

// Gives an unnamed file (O_TMPFILE) its name in new/: through /proc, since linkat with
// AT_EMPTY_PATH needs a capability mda does not have.
bool link_into_new(const StagedMaildir& s) {
  const std::string self = "/proc/self/fd/" + std::to_string(s.fd.get());
  return linkat(AT_FDCWD, self.c_str(), AT_FDCWD, s.new_path.c_str(), AT_SYMLINK_FOLLOW) == 0;
}

}  // namespace

bool can_link_unnamed() {
#if defined(__linux__) && defined(O_TMPFILE)
  static const bool kProcMounted =
      static_cast<bool>(UniqueFd(open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
  return kProcMounted;
#else
  return false;
#endif
}

Result<StagedMaildir> stage_maildir(const std::string& maildir, const std::string& header,
                                    const MessageData& message, const std::string& unique,
                                    bool unnamed) {
  StagedMaildir staged{maildir + "/tmp/" + unique, maildir + "/new/" + unique, maildir + "/new",
                       UniqueFd()};
  unnamed = unnamed && can_link_unnamed();
  auto create = [&] {
#ifdef O_TMPFILE
    if (unnamed) {
      staged.fd.reset(open(staged.new_dir.c_str(), O_WRONLY | O_TMPFILE | O_CLOEXEC, 0600));
      if (staged.fd) {
        staged.tmp_path.clear();
        return;
      }
      // A filesystem without unnamed files (or a kernel that does not know the flag): tmp/.
      if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return;
      unnamed = false;
    }
#endif
    staged.fd.reset(
        open(staged.tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  };
  // Usually the Maildir exists: only when it is missing are the folders made (first mail).
  create();
  if (!staged.fd && errno == ENOENT) {
    for (const char* sub : {"/tmp", "/new", "/cur"})
      if (Status st = make_dirs(maildir + sub); !st.ok()) return st.error();
    create();
  }
  if (!staged.fd) return errno_error("create " + (unnamed ? staged.new_dir : staged.tmp_path));
  Status written = write_all(staged.fd.get(), header);
  if (written.ok())
    written = read_message(
        message, [fd = staged.fd.get()](std::string_view chunk) { return write_all(fd, chunk); });
  if (!written.ok()) {
    if (staged.named()) unlink(staged.tmp_path.c_str());
    return written.error();
  }
  return staged;
}

namespace {

// Beyond this many files one syncfs per filesystem is cheaper than an fsync each.
constexpr size_t kSyncfsBatch = 4;

// Makes what was written durable: one syncfs per filesystem for many files, or when asked for
// the whole filesystem (Linux), else an fsync each (syncfs also flushes whatever else is dirty
// on the filesystem).
Status sync_all(const std::vector<int>& fds, bool whole_filesystem = false) {
#ifdef __linux__
  if (fds.size() <= kSyncfsBatch && !whole_filesystem) {
    for (int fd : fds)
      if (fsync(fd) != 0) return errno_error("fsync");
    return ok_status();
  }
  std::vector<dev_t> done;
  for (int fd : fds) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return errno_error("fstat");
    bool seen = false;
    for (dev_t d : done) seen = seen || d == st.st_dev;
    if (seen) continue;
    if (syncfs(fd) != 0) return errno_error("syncfs");
    done.push_back(st.st_dev);
  }
#else
  if (whole_filesystem) return make_error("cannot make a rename durable without its directory");
  for (int fd : fds)
    if (fsync(fd) != 0) return errno_error("fsync");
#endif
  return ok_status();
}

}  // namespace

std::vector<Status> publish_maildirs(std::vector<StagedMaildir>& staged) {
  std::vector<Status> results(staged.size(), ok_status());
  std::vector<int> fds;
  fds.reserve(staged.size());
  for (const auto& s : staged) fds.push_back(s.fd.get());
  // The data is on disk before any name appears in new/.
  if (Status synced = sync_all(fds); !synced.ok()) {
    for (size_t i = 0; i < staged.size(); ++i) {
      if (staged[i].named()) unlink(staged[i].tmp_path.c_str());
      results[i] = synced;
    }
    return results;
  }
  std::vector<char> renamed(staged.size(), 0);
  for_each_index(staged.size(), [&](size_t i) {
    const StagedMaildir& s = staged[i];
    auto name = [&] {
      return s.named() ? rename(s.tmp_path.c_str(), s.new_path.c_str()) == 0 : link_into_new(s);
    };
    bool ok = name();
    // A delivery killed while it was creating the Maildir leaves tmp/ without new/ (or new/
    // went away since the file was staged).
    if (!ok && errno == ENOENT) {
      const std::string cur = s.new_dir.substr(0, s.new_dir.size() - 3) + "cur";
      if (make_dirs(s.new_dir).ok() && make_dirs(cur).ok()) ok = name();
    }
    if (!ok) {
      results[i] = errno_error(s.named() ? "rename into new/" : "link into new/");
      if (s.named()) unlink(s.tmp_path.c_str());
    }
    renamed[i] = ok ? 1 : 0;
  });
  std::vector<int> published;
  std::vector<UniqueFd> dirs;
  std::vector<const std::string*> dir_names;
  bool whole_filesystem = false;
  for (size_t i = 0; i < staged.size(); ++i) {
    if (!renamed[i]) continue;
    // The rename is durable once new/ is: for a big batch one syncfs through any file covers
    // the filesystem, new/ included; otherwise each new/ is fsynced, once however many files
    // went into it (a burst of mail for one mailbox). A linked file's new link count is in its
    // inode, which an fsync of new/ does not write on every filesystem (ext4 without a
    // journal): those take the syncfs.
    if (!staged[i].named()) whole_filesystem = true;
    if (staged.size() > kSyncfsBatch || !staged[i].named()) {
      published.push_back(staged[i].fd.get());
      continue;
    }
    const std::string& dir = staged[i].new_dir;
    if (std::any_of(dir_names.begin(), dir_names.end(), [&](auto* d) { return *d == dir; }))
      continue;
    dir_names.push_back(&dir);
    dirs.emplace_back(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dirs.back()) {
      published.push_back(dirs.back().get());
    } else {
      // (Out of descriptors, say.) The file is in new/ already: a syncfs through it makes
      // the rename durable all the same.
      published.push_back(staged[i].fd.get());
      whole_filesystem = true;
    }
  }
  // The renames are durable once their directories are.
  const Status synced = sync_all(published, whole_filesystem);
  for (auto& s : staged) s.fd.reset();
  if (!synced.ok())
    for (auto& r : results)
      if (r.ok()) r = synced;
  return results;
}

Result<std::string> deliver_to_maildir(const std::string& maildir, const std::string& header,
                                       const MessageData& message, const std::string& unique) {
  return std::move(deliver_to_maildirs({{maildir, header, message, unique}}).front());
}

std::vector<Result<StagedMaildir>> stage_maildirs(const std::vector<MaildirDelivery>& all) {
  std::vector<std::optional<Result<StagedMaildir>>> staged(all.size());
  // A batch big enough for syncfs anyway writes unnamed files: see stage_maildir.
  const bool unnamed = all.size() > kSyncfsBatch;
  for_each_index(all.size(), [&](size_t i) {
    const MaildirDelivery& d = all[i];
    staged[i] = stage_maildir(d.maildir, d.header, d.message, d.unique, unnamed);
  });
  std::vector<Result<StagedMaildir>> out;
  out.reserve(all.size());
  for (auto& s : staged) out.push_back(std::move(*s));
  return out;
}

std::vector<Result<std::string>> publish_staged(std::vector<Result<StagedMaildir>>& staged) {
  std::vector<StagedMaildir> ready;
  std::vector<size_t> ready_index;
  std::vector<Result<std::string>> results;
  results.reserve(staged.size());
  for (size_t i = 0; i < staged.size(); ++i) {
    if (staged[i].ok()) {
      ready_index.push_back(i);
      ready.push_back(std::move(staged[i]).value());
      results.emplace_back(ready.back().new_path);
    } else {
      results.emplace_back(staged[i].error());
    }
  }
  const std::vector<Status> published = publish_maildirs(ready);
  for (size_t k = 0; k < ready.size(); ++k)
    if (!published[k].ok()) results[ready_index[k]] = published[k].error();
  return results;
}

std::vector<Result<std::string>> deliver_to_maildirs(const std::vector<MaildirDelivery>& all) {
  std::vector<Result<StagedMaildir>> staged = stage_maildirs(all);
  return publish_staged(staged);
}

}  // namespace postern::mda
