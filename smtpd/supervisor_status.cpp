// The parent's supervisor, smtpctl show status: one round asks every running child for its
// counters and answers control with them and the parent's own view (pids, restarts, crash
// back-off) when all have replied or the round times out; see supervisor.hpp.
#include "smtpd/supervisor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "common/util/log.hpp"
#include "control/api.hpp"

namespace postern::smtpd {

void Supervisor::begin_status(uint32_t control_request) {
  const uint32_t id = next_round_++;
  StatusRound& round = rounds_[id];
  round.control_request = control_request;
  for (Role role : kChildRoles) {
    Child& c = child(role);
    if (c.pid <= 0 || !c.channel) continue;
    if (msg::send(*c.channel, msg::StatusRequest{}, id)) ++round.awaited;
  }
  round.timeout = std::make_unique<Timer>(base_, [this, id] { finish_status(id); });
  round.timeout->arm(kStatusTimeout);
  if (round.awaited == 0) finish_status(id);
}

void Supervisor::finish_status(uint32_t round_id) {
  auto it = rounds_.find(round_id);
  if (it == rounds_.end()) return;
  StatusRound round = std::move(it->second);
  rounds_.erase(it);

  msg::CtlStatus status;
  status.processes.push_back({.role = Role::parent,
                              .pid = static_cast<uint32_t>(getpid()),
                              .started_at = started_at_,
                              .restarts = 0,
                              .counters = {{"listeners", listeners_.size()}},
                              .peers = {},
                              .answered = true});
  const auto now = std::chrono::steady_clock::now();
  for (Role role : kChildRoles) {
    const Child& c = child(role);
    msg::ProcessStatus p{.role = role,
                         .pid = static_cast<uint32_t>(c.pid > 0 ? c.pid : 0),
                         .started_at = c.started_at,
                         .restarts = c.restarts,
                         .counters = {},
                         .peers = {},
                         .crashes = c.backoff.crashes(c.pid > 0, c.spawned_at, now),
                         .restart_in_ms = 0,
                         .answered = false};
    if (c.pid <= 0 && c.restart_due) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*c.restart_due - now);
      p.restart_in_ms = static_cast<uint32_t>(std::clamp<int64_t>(wait.count(), 1, UINT32_MAX));
    }
    if (auto reply = round.replies.find(role); reply != round.replies.end()) {
      p.counters = std::move(reply->second.counters);
      p.peers = std::move(reply->second.peers);
      p.answered = true;
    }
    status.processes.push_back(std::move(p));
  }
  Child& control = child(Role::control);
  if (control.channel && !msg::send(*control.channel, status, round.control_request))
    log::warn("cannot answer control's status request");
}

}  // namespace postern::smtpd
