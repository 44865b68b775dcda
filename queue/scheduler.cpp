// The scheduler; see scheduler.hpp.
#include "queue/scheduler.hpp"

#include <fcntl.h>

#include <ctime>

#include "common/log.hpp"

namespace postern::queue {
namespace {

const char* status_word(msg::DeliveryOutcome outcome) {
  switch (outcome) {
    case msg::DeliveryOutcome::delivered:
      return "sent";
    case msg::DeliveryOutcome::temporary_failure:
      return "deferred";
    case msg::DeliveryOutcome::permanent_failure:
      return "bounced";
  }
  return "unknown";
}

}  // namespace

Scheduler::Scheduler(ChildRuntime& runtime, Spool& spool, Committer& committer)
    : runtime_(runtime), spool_(spool), committer_(committer) {
  update_counters();
}

void Scheduler::set_local_domains(const std::vector<std::string>& domains) {
  local_domains_ = {domains.begin(), domains.end()};
}

bool Scheduler::is_local(const std::string& address) const {
  const size_t at = address.rfind('@');
  if (at == std::string::npos) return true;  // <postmaster>
  return local_domains_.contains(std::string_view(address).substr(at + 1));
}

void Scheduler::add(Envelope envelope) {
  const std::string id = envelope.id;
  messages_[id] = std::move(envelope);
  update_counters();
  dispatch(id);
}

void Scheduler::dispatch(const std::string& id) {
  auto it = messages_.find(id);
  if (it == messages_.end() || in_flight_.contains(id) || paused_) return;
  ipc::Channel* mda = runtime_.peer(Role::mda);
  if (mda == nullptr) return;  // mda_ready() sends it
  const Envelope& e = it->second;
  std::vector<msg::LocalRecipient> todo;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    const Recipient& r = e.recipients[i];
    if (r.state == RecipientState::pending && is_local(r.address))
      todo.push_back({static_cast<uint32_t>(i), r.address});
  }
  if (todo.empty()) return;
  Result<UniqueFd> data = spool_.open_message(id);
  if (!data.ok()) {
    log::error("%s: %s", id.c_str(), data.error().message.c_str());
    return;
  }
  Flight& flight = in_flight_[id];
  for (size_t i = 0; i < todo.size(); i += msg::kRecipientsPerBatch) {
    msg::DeliverLocal job{.id = id, .sender = e.sender, .recipients = {}};
    const size_t end = std::min(todo.size(), i + msg::kRecipientsPerBatch);
    job.recipients.assign(todo.begin() + static_cast<std::ptrdiff_t>(i),
                          todo.begin() + static_cast<std::ptrdiff_t>(end));
    UniqueFd fd(fcntl(data->get(), F_DUPFD_CLOEXEC, 0));
    if (!msg::send(*mda, job, 0, std::move(fd))) {
      log::warn("%s: cannot hand the message to mda", id.c_str());
      break;
    }
    ++flight.batches;
  }
  if (flight.batches == 0) in_flight_.erase(id);
}

void Scheduler::on_report(const msg::DeliveryReport& report) {
  auto it = messages_.find(report.id);
  auto flight = in_flight_.find(report.id);
  if (it == messages_.end() || flight == in_flight_.end()) return;
  Envelope& e = it->second;
  const double delay = static_cast<double>(time(nullptr) - e.arrival);
  for (const msg::DeliveryResult& r : report.results) {
    if (r.index >= e.recipients.size()) continue;
    Recipient& rcpt = e.recipients[r.index];
    if (rcpt.state != RecipientState::pending) continue;
    log::info("%s: to=<%s>, relay=local, delay=%.0f, dsn=%s, status=%s (%s)", e.id.c_str(),
              rcpt.address.c_str(), delay, r.dsn.c_str(), status_word(r.outcome), r.detail.c_str());
    switch (r.outcome) {
      case msg::DeliveryOutcome::delivered:
        rcpt.state = RecipientState::delivered;
        ++delivered_;
        flight->second.changed = true;
        break;
      case msg::DeliveryOutcome::permanent_failure:
        rcpt.state = RecipientState::failed;
        ++bounced_;
        flight->second.changed = true;
        break;
      case msg::DeliveryOutcome::temporary_failure:
        ++deferred_;
        break;
    }
  }
  if (--flight->second.batches == 0) settle(report.id);
  update_counters();
}

// Every batch of a dispatch has answered: record the states, then retry or remove.
void Scheduler::settle(const std::string& id) {
  const bool changed = in_flight_[id].changed;
  in_flight_.erase(id);
  const Envelope& e = messages_.at(id);
  bool local_pending = false;
  bool any_pending = false;
  for (const Recipient& r : e.recipients) {
    if (r.state != RecipientState::pending) continue;
    any_pending = true;
    local_pending = local_pending || is_local(r.address);
  }
  if (!any_pending) {
    remove_from_spool(id, "removed");
    return;
  }
  if (changed) {
    Envelope copy = e;
    committer_.run([this, copy] { return spool_.update_envelope(copy); },
                   [id](const Status& st) {
                     if (!st.ok())
                       log::error("%s: cannot record delivery states: %s", id.c_str(),
                                  st.error().message.c_str());
                   });
  }
  if (!local_pending) return;
  const int attempt = ++attempts_[id];
  auto wait = kFirstRetry * (1 << std::min(attempt - 1, 6));
  if (wait > kMaxRetry) wait = kMaxRetry;
  auto& timer = retries_[id];
  if (!timer) timer = std::make_unique<Timer>(runtime_.base(), [this, id] { dispatch(id); });
  timer->arm(std::chrono::duration_cast<std::chrono::milliseconds>(wait));
}

void Scheduler::remove_from_spool(const std::string& id, const char* why) {
  committer_.run([this, id] { return spool_.remove(id); },
                 [this, id, why](const Status& st) {
                   if (!st.ok()) {
                     log::error("%s: cannot remove: %s", id.c_str(), st.error().message.c_str());
                     return;
                   }
                   log::info("%s: %s", id.c_str(), why);
                   messages_.erase(id);
                   retries_.erase(id);
                   attempts_.erase(id);
                   update_counters();
                 });
}

std::vector<std::string> Scheduler::select(const std::string& id_or_all, std::string& error) const {
  std::vector<std::string> ids;
  if (id_or_all == "all") {
    for (const auto& [id, e] : messages_) ids.push_back(id);
  } else if (valid_queue_id(id_or_all) && messages_.contains(id_or_all)) {
    ids.push_back(id_or_all);
  } else {
    error = "no message " + id_or_all;
  }
  return ids;
}

Result<std::string> Scheduler::schedule(const std::string& id_or_all) {
  std::string error;
  const std::vector<std::string> ids = select(id_or_all, error);
  if (!error.empty()) return make_error(error);
  for (const std::string& id : ids) {
    if (auto timer = retries_.find(id); timer != retries_.end()) timer->second->cancel();
    dispatch(id);
  }
  return std::to_string(ids.size()) + " scheduled" + (paused_ ? " (deliveries are paused)" : "");
}

Result<std::string> Scheduler::remove(const std::string& id_or_all) {
  std::string error;
  const std::vector<std::string> ids = select(id_or_all, error);
  if (!error.empty()) return make_error(error);
  for (const std::string& id : ids) {
    // A job already at mda may still deliver; its report then finds nothing to update.
    in_flight_.erase(id);
    if (auto timer = retries_.find(id); timer != retries_.end()) timer->second->cancel();
    remove_from_spool(id, "removed by smtpctl");
  }
  return std::to_string(ids.size()) + " removed";
}

std::string Scheduler::pause_deliveries(bool pause) {
  paused_ = pause;
  log::info("local deliveries %s", pause ? "paused" : "resumed");
  if (!pause) mda_ready();
  return pause ? "mda paused" : "mda resumed";
}

void Scheduler::mda_ready() {
  for (const auto& [id, e] : messages_) dispatch(id);
}

void Scheduler::mda_lost() {
  // Whatever mda had in hand is pending again; a delivery it finished but did not report
  // is repeated (at least once).
  in_flight_.clear();
}

void Scheduler::update_counters() {
  auto& c = runtime_.counters();
  c["queued"] = messages_.size();
  c["delivered"] = delivered_;
  c["deferred"] = deferred_;
  c["bounced"] = bounced_;
}

}  // namespace postern::queue
