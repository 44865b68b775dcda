// The parent's delivery helpers: mda asks for one delivery at a time (HelperDeliver with a
// sealed memfd of the message); the parent asks lookup itself where the recipient's mail
// goes, starts smtpd-deliver only when the destination mda named is among lookup's and its
// account passes common/mail/accounts.hpp, and forwards the helper's HelperResult to mda. At most
// kMaxHelpers run at once and kMaxHelperBacklog wait; more is refused (mda defers).
// Never takes mda's word for an account, a path or a command. See docs/privsep.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/mail/accounts.hpp"
#include "common/util/event.hpp"
#include "mda/api.hpp"
#include "smtpd/api.hpp"
#include "smtpd/config.hpp"
#include "smtpd/host.hpp"

namespace postern::smtpd {

// A helper's time beyond its command's timeout before the parent kills it.
constexpr uint32_t kHelperGraceSeconds = 60;

class DeliveryHelpers {
 public:
  struct Options {
    std::string exec_dir;
    bool foreground = false;
  };
  // channel_of(Role::mda or Role::lookup): the parent's channel to it now, or nullptr.
  DeliveryHelpers(event_base* base, Options options, Identities ids,
                  std::function<ipc::Channel*(Role)> channel_of);
  DeliveryHelpers(const DeliveryHelpers&) = delete;
  DeliveryHelpers& operator=(const DeliveryHelpers&) = delete;
  ~DeliveryHelpers() = default;

  // The domains (their min_uid) and the daemon's own users; at start and at every reload.
  void configure(const Config& config, accounts::Policy daemon_accounts);
  // From mda: fd must be a sealed memfd of m.size bytes.
  void request(uint32_t mda_request, msg::HelperDeliver&& m, UniqueFd fd);
  // From lookup: the answer to a ResolveLocal of ours.
  void on_routes(uint32_t request, msg::LocalRoutes&& m);
  // A reaped pid: true when it was a helper's.
  bool reaped(pid_t pid, int wait_status);
  // lookup is gone: requests waiting for its answer are refused. mda is gone: its requests
  // are dropped, and answers of helpers still running go nowhere.
  void peer_lost(Role role);
  size_t running() const { return running_.size(); }

 private:
  struct Request {
    uint32_t mda_request = 0;
    uint64_t mda_generation = 0;
    msg::HelperDeliver message;
    UniqueFd fd;
    uid_t uid = 0;
    gid_t gid = 0;
  };
  struct Running {
    Request request;
    std::unique_ptr<ipc::Channel> channel;
    std::unique_ptr<Timer> watchdog;
    bool answered = false;
    // Its end: the pid reaped and the channel read to its end, in either order (SIGCHLD can
    // come before the last frame is read).
    std::optional<int> wait_status;
    bool channel_done = false;
  };

  void refuse(const Request& r, const std::string& why);
  void confirmed(Request r, const msg::LocalRoute& route);
  void start_waiting();
  void start(Request r);
  void on_helper_frame(pid_t pid, ipc::Frame&& frame);
  void answer(const Request& r, const msg::HelperResult& result);
  void finish_if_over(pid_t pid);
  std::string account_name(const Request& r) const;

  event_base* base_;
  Options options_;
  Identities ids_;
  std::function<ipc::Channel*(Role)> channel_of_;
  std::vector<lookup::Domain> domains_;
  accounts::Policy daemon_accounts_;
  uint64_t mda_generation_ = 1;
  uint32_t next_request_ = 1;
  std::map<uint32_t, Request> confirming_;  // by our ResolveLocal's request id
  std::deque<Request> waiting_;             // confirmed, for a free helper
  std::map<pid_t, Running> running_;
};

}  // namespace postern::smtpd
