// The offline area's pick-up; see offline.hpp.
#include "smtpd/offline.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/ipc/messages.hpp"
#include "common/util/log.hpp"
#include "queue/api.hpp"
#include "queue/submission.hpp"

namespace postern::smtpd {
namespace {

constexpr mode_t kAreaMode = 01733;
// Names read per scan; a flood waits for the next ones.
constexpr size_t kNamesPerScan = 1000;

std::vector<std::string> list_names(int dir) {
  std::vector<std::string> names;
  UniqueFd copy(fcntl(dir, F_DUPFD_CLOEXEC, 0));
  DIR* d = copy ? fdopendir(copy.get()) : nullptr;
  if (d == nullptr) return names;
  copy.release();  // owned by d now
  while (names.size() < kNamesPerScan) {
    const dirent* entry = readdir(d);
    if (entry == nullptr) break;
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

// A name fit for corrupt/: what the submitter chose, tamed.
std::string aside_name(const std::string& name) {
  std::string out = "offline-" + std::to_string(time(nullptr)) + "-";
  for (char c : name.substr(0, 64))
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return out;
}

}  // namespace

OfflinePickup::OfflinePickup(event_base* base, QueueChannel queue)
    : queue_(std::move(queue)), timer_(base, [this] { scan(); }) {}

void OfflinePickup::start() {
  scan();
}

UniqueFd OfflinePickup::open_area() const {
  const std::string path = settings_.spool_dir + "/offline";
  UniqueFd dir(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!dir || fstat(dir.get(), &st) != 0) return {};
  // Made so by the parent at start (host.cpp); anything else was put there by someone else
  // (the queue user owns the spool around it) and is not ours to read.
  if (st.st_uid != geteuid() || (st.st_mode & 07777) != kAreaMode) return {};
  return dir;
}

void OfflinePickup::scan() {
  timer_.arm(kOfflineScanInterval);
  ipc::Channel* queue = queue_();
  if (queue == nullptr || settings_.spool_dir.empty()) return;
  const UniqueFd dir = open_area();
  if (!dir) {
    if (!area_warned_)
      log::warn(
          "offline area %s/offline is missing, or not the parent's with mode 1733: local "
          "submissions there are not picked up",
          settings_.spool_dir.c_str());
    area_warned_ = true;
    return;
  }
  area_warned_ = false;
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(later_, [now](const auto& entry) { return entry.second <= now; });
  for (const std::string& name : list_names(dir.get())) {
    if (in_flight_.size() >= kOfflineInFlight) break;
    if (in_flight_.contains(name) || later_.contains(name)) continue;
    offer(dir.get(), *queue, name);
  }
}

void OfflinePickup::offer(int dir, ipc::Channel& queue, const std::string& name) {
  if (name.front() == '.') {
    // Still being written, or abandoned by a sendmail that was killed.
    struct stat st {};
    if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        time(nullptr) - st.st_mtime > std::chrono::seconds(kOfflineAbandoned).count() &&
        unlinkat(dir, name.c_str(), 0) == 0)
      log::info("offline/%s: unfinished for a day; removed", name.c_str());
    return;
  }
  // Never follows a link, never blocks on a FIFO, never takes a terminal.
  UniqueFd file(
      openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!file) {
    const int err = errno;
    if (err == ENOENT) return;  // gone meanwhile
    refuse(dir, name, err == ELOOP ? "a symbolic link" : std::strerror(err));
    return;
  }
  struct stat st {};
  if (fstat(file.get(), &st) != 0) return refuse(dir, name, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return refuse(dir, name, "not a regular file");
  // A second link could be a name for another user's file, or one file offered twice.
  if (st.st_nlink != 1)
    return refuse(dir, name, "a file with " + std::to_string(st.st_nlink) + " links");
  const uint64_t limit = settings_.max_size + queue::kMaxSubmissionHeader;
  if (static_cast<uint64_t>(st.st_size) > limit)
    return refuse(dir, name,
                  std::to_string(st.st_size) + " octets, more than " + std::to_string(limit));
  if (std::find(settings_.daemon_uids.begin(), settings_.daemon_uids.end(), st.st_uid) !=
      settings_.daemon_uids.end())
    return refuse(dir, name,
                  "owned by uid " + std::to_string(st.st_uid) + ", one of the daemon's own users");
  const passwd* pw = getpwuid(st.st_uid);
  if (pw == nullptr)
    return refuse(dir, name,
                  "owned by uid " + std::to_string(st.st_uid) + ", which has no account");
  msg::OfflineMessage m{.name = name,
                        .uid = static_cast<uint32_t>(st.st_uid),
                        .user = pw->pw_name,
                        .trusted = trusted(st.st_uid, pw->pw_gid, pw->pw_name),
                        .max_size = settings_.max_size};
  if (m.user.empty() || m.user.size() > msg::kMaxUserName || name.size() > msg::kMaxFileName)
    return refuse(dir, name, "an owner or name this daemon cannot carry");
  if (!msg::send(queue, m, 0, std::move(file))) return;  // the next scan tries again
  in_flight_[name] = {st.st_dev, st.st_ino};
}

bool OfflinePickup::trusted(uid_t uid, gid_t gid, const char* user) const {
  if (uid == 0) return true;
  if (!settings_.trusted_gid) return false;
  if (gid == *settings_.trusted_gid) return true;
  const group* gr = getgrgid(*settings_.trusted_gid);
  if (gr == nullptr) return false;
  for (char** member = gr->gr_mem; *member != nullptr; ++member)
    if (std::strcmp(*member, user) == 0) return true;
  return false;
}

bool OfflinePickup::same_file(int dir, const std::string& name, const Identity& id) {
  struct stat st {};
  return fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == id.dev &&
         st.st_ino == id.ino;
}

void OfflinePickup::refuse(int dir, const std::string& name, const std::string& why) const {
  const std::string corrupt_path = settings_.spool_dir + "/corrupt";
  const UniqueFd corrupt(
      open(corrupt_path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  const std::string aside = aside_name(name);
  if (corrupt && renameat(dir, name.c_str(), corrupt.get(), aside.c_str()) == 0) {
    log::warn("offline/%s: refused: %s; moved to corrupt/%s", name.c_str(), why.c_str(),
              aside.c_str());
    return;
  }
  const std::string err = std::strerror(errno);
  if (unlinkat(dir, name.c_str(), 0) == 0)
    log::warn("offline/%s: refused: %s; removed (cannot move it to corrupt/: %s)", name.c_str(),
              why.c_str(), err.c_str());
  else
    log::warn("offline/%s: refused: %s; cannot move or remove it: %s", name.c_str(), why.c_str(),
              err.c_str());
}

OfflinePickup::Settings offline_settings(const Config& config, const Identities& ids) {
  OfflinePickup::Settings s{.spool_dir = config.spool_dir,
                            .max_size = config.smtp.limits.message_size,
                            .trusted_gid = std::nullopt,
                            .daemon_uids = {}};
  if (config.control.group)
    if (const group* gr = getgrnam(config.control.group->c_str()); gr != nullptr)
      s.trusted_gid = gr->gr_gid;
  // Unprivileged, every process runs as the one user who started smtpd, and only that user's
  // files can be read at all.
  if (ids.privileged) s.daemon_uids = {ids.smtpd_uid, ids.queue_uid, ids.virtual_uid};
  return s;
}

void OfflinePickup::on_result(const msg::OfflineResult& result) {
  auto it = in_flight_.find(result.name);
  if (it == in_flight_.end()) return;
  const Identity id = it->second;
  in_flight_.erase(it);
  const UniqueFd dir = open_area();
  if (!dir) return;
  switch (result.outcome) {
    case msg::OfflineOutcome::queued:
      if (same_file(dir.get(), result.name, id)) unlinkat(dir.get(), result.name.c_str(), 0);
      log::info("offline/%s: queued as %s", result.name.c_str(), result.reason.c_str());
      break;
    case msg::OfflineOutcome::refused:
      if (same_file(dir.get(), result.name, id))
        refuse(dir.get(), result.name, "the queue says: " + result.reason);
      break;
    case msg::OfflineOutcome::later:
      log::info("offline/%s: not taken now (%s); again in %lld s", result.name.c_str(),
                result.reason.c_str(), static_cast<long long>(kOfflineRetry.count()));
      later_[result.name] = std::chrono::steady_clock::now() + kOfflineRetry;
      break;
  }
}

}  // namespace postern::smtpd
