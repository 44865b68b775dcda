// The offline area, <spool>/offline: sendmail(8) drops each local submission there as a file
// of its user's (the directory is the parent's, mode 1733: anyone may add a file, no one else
// may list, read or remove it). The parent looks every second and at the queue's start: it
// opens each finished file without following links, checks what it is (a regular file with
// one link, of an account that is none of the daemon's own, not too big) and hands the
// descriptor to the queue with the owner's uid, which the kernel recorded, as the sender's
// identity. It never reads a file's content: the queue does (queue/submission.hpp). A file
// refused here or by the queue is moved to corrupt/ with a log line; one the queue took is
// removed once it is committed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ipc/ipc.hpp"
#include "common/util/event.hpp"
#include "smtpd/api.hpp"
#include "smtpd/config.hpp"
#include "smtpd/host.hpp"

namespace postern::smtpd {

constexpr std::chrono::seconds kOfflineScanInterval{1};
// A file the queue could not take now (full disk) is offered again after this.
constexpr std::chrono::seconds kOfflineRetry{30};
// Files handed to the queue and not yet answered; the rest wait for the next scan.
constexpr size_t kOfflineInFlight = 16;
// A file sendmail is still writing starts with a dot; one left this long was abandoned.
constexpr std::chrono::hours kOfflineAbandoned{24};

class OfflinePickup {
 public:
  struct Settings {
    std::string spool_dir;
    uint64_t max_size = 0;             // a message's, as smtp bounds it
    std::optional<gid_t> trusted_gid;  // control.group: its members may use -f freely
    std::vector<uid_t> daemon_uids;    // whose files are refused
  };
  // The queue's channel once it is ready, else nullptr.
  using QueueChannel = std::function<ipc::Channel*()>;

  OfflinePickup(event_base* base, QueueChannel queue);
  void configure(Settings settings) { settings_ = std::move(settings); }
  // The queue is ready: scan now, then every kOfflineScanInterval.
  void start();
  // The queue went away: what it held unanswered is offered again to the next one.
  void queue_lost() { in_flight_.clear(); }
  void on_result(const msg::OfflineResult& result);

 private:
  struct Identity {
    dev_t dev = 0;
    ino_t ino = 0;
  };
  void scan();
  // One entry of the area: handed to the queue, refused, or left for later.
  void offer(int dir, ipc::Channel& queue, const std::string& name);
  // Moves the entry to corrupt/ (renamed, never opened or followed) and says why.
  void refuse(int dir, const std::string& name, const std::string& why) const;
  // The entry still is the file that was opened (its owner cannot have swapped it, but a
  // removal must never hit another file).
  static bool same_file(int dir, const std::string& name, const Identity& id);
  UniqueFd open_area() const;
  bool trusted(uid_t uid, gid_t gid, const char* user) const;

  QueueChannel queue_;
  Settings settings_;
  Timer timer_;
  std::map<std::string, Identity> in_flight_;
  std::map<std::string, std::chrono::steady_clock::time_point> later_;
  bool area_warned_ = false;
};

// The pick-up's settings from the configuration: the spool, smtp's message size, control.group
// as the trusted group, and (when privileged) the daemon's users.
OfflinePickup::Settings offline_settings(const Config& config, const Identities& ids);

}  // namespace postern::smtpd
