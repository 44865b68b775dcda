// The scheduler; see scheduler.hpp.
#include "queue/scheduler.hpp"

#include <fcntl.h>
#include <sys/random.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>

#include "common/util/io.hpp"
#include "common/util/log.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"
#include "queue/dsn.hpp"
#include "queue/envelope_file.hpp"

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

Scheduler::Scheduler(ChildRuntime& runtime, Spool& spool, Spares& spares, Committer& committer)
    : runtime_(runtime), spool_(spool), spares_(spares), committer_(committer) {
  // A clock would do as well; a failure leaves 0, which only makes an old report's match
  // likelier.
  (void)!getrandom(&flights_, sizeof flights_, 0);
  update_counters();
}

void Scheduler::configure(const Settings& settings) {
  settings_ = settings;
  local_domains_ = {settings.local_domains.begin(), settings.local_domains.end()};
}

bool Scheduler::is_local(const std::string& address) const {
  const size_t at = address.rfind('@');
  if (at == std::string::npos) return true;  // <postmaster>
  return local_domains_.contains(std::string_view(address).substr(at + 1));
}

void Scheduler::add(Envelope envelope) {
  const std::string id = envelope.id;
  const int64_t next_try = envelope.next_try;
  messages_[id] = std::move(envelope);
  update_counters();
  // Found at start with a retry still ahead: the backoff holds across restarts.
  const int64_t now = time(nullptr);
  if (next_try > now) {
    retry_at(id, std::chrono::seconds(next_try - now));
    return;
  }
  dispatch(id);
}

void Scheduler::retry_at(const std::string& id, std::chrono::seconds wait) {
  auto& timer = retries_[id];
  if (!timer) timer = std::make_unique<Timer>(runtime_.base(), [this, id] { dispatch(id); });
  timer->arm(std::chrono::duration_cast<std::chrono::milliseconds>(wait));
}

void Scheduler::dispatch(const std::string& id) {
  auto it = messages_.find(id);
  if (it == messages_.end() || in_flight_.contains(id) || paused_) return;
  ipc::Channel* mda = runtime_.peer(Role::mda);
  if (mda == nullptr) return;  // mda_ready() sends it
  Envelope& e = it->second;
  std::vector<msg::LocalRecipient> todo;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    const Recipient& r = e.recipients[i];
    if (r.state == RecipientState::pending && is_local(r.address))
      todo.push_back({static_cast<uint32_t>(i), r.address});
  }
  if (todo.empty()) return;
  if (in_flight_.size() >= settings_.in_delivery) {
    if (waiting_ids_.insert(id).second) waiting_.push_back(id);
    hurry_records_if_blocked();
    update_counters();
    return;
  }
  Result<UniqueFd> data = spool_.open_message(id);
  if (!data.ok()) {
    log::error("%s: %s", id.c_str(), data.error().message.c_str());
    return;
  }
  Flight& flight = in_flight_[id];
  flight.serial = ++flights_ != 0 ? flights_ : ++flights_;  // (0: none)
  for (size_t i = 0, end = 0; i < todo.size(); i = end) {
    // Up to kLocalRecipientsPerJob, as long as they fit a frame: a thousand long addresses
    // do not, and a frame the channel refuses for its size would never go.
    size_t bytes = msg::kLocalJobOverhead + e.sender.size();
    for (end = i; end < todo.size() && end - i < msg::kLocalRecipientsPerJob; ++end) {
      const size_t more = msg::kLocalRecipientOverhead + todo[end].address.size();
      if (end > i && bytes + more > msg::kLocalJobBytes) break;
      bytes += more;
    }
    msg::DeliverLocal job{.id = id, .size = e.size, .sender = e.sender, .recipients = {}};
    job.recipients.assign(todo.begin() + static_cast<std::ptrdiff_t>(i),
                          todo.begin() + static_cast<std::ptrdiff_t>(end));
    UniqueFd fd(fcntl(data->get(), F_DUPFD_CLOEXEC, 0));
    if (!msg::send(*mda, job, flight.serial, std::move(fd))) {
      log::warn("%s: cannot hand the message to mda", id.c_str());
      break;
    }
    ++flight.batches;
    // Counted as tried once it is in mda's hands (recorded in the spool when it settles).
    for (size_t k = i; k < end; ++k) {
      uint32_t& attempts = e.recipients[todo[k].index].attempts;
      if (attempts < UINT32_MAX) ++attempts;
    }
  }
  if (flight.batches == 0) {
    // Nothing went (mda's channel has a full queue of frames): try again shortly rather than
    // wait for the next mda_ready() or smtpctl schedule. A message some of whose batches went
    // has its retry set when they settle.
    in_flight_.erase(id);
    retry_at(id, std::chrono::seconds(1));
  }
  update_counters();
}

void Scheduler::recorded(const std::string& id, uint32_t serial) {
  auto flight = in_flight_.find(id);
  if (flight == in_flight_.end() || flight->second.serial != serial) return;
  end_flight(flight);
  // A retry that came due while the outcome was being recorded found it in delivery.
  auto it = messages_.find(id);
  if (it != messages_.end() && it->second.next_try <= time(nullptr)) dispatch(id);
}

void Scheduler::end_flight(std::map<std::string, Flight>::iterator flight) {
  in_flight_.erase(flight);
  dispatch_waiting();
  update_counters();
}

// Messages wait for a place: records gathering for a shared directory fsync would keep them
// waiting. Records still share one, those that come while the thread syncs the last batch.
void Scheduler::hurry_records_if_blocked() {
  if (!waiting_.empty()) committer_.hurry();
}

void Scheduler::dispatch_waiting() {
  while (!waiting_.empty() && in_flight_.size() < settings_.in_delivery) {
    const std::string id = std::move(waiting_.front());
    waiting_.pop_front();
    waiting_ids_.erase(id);
    dispatch(id);
  }
}

void Scheduler::on_report(const msg::DeliveryReport& report, uint32_t request_id) {
  auto it = messages_.find(report.id);
  auto flight = in_flight_.find(report.id);
  // A report for another flight (of an earlier queue process, or one smtpctl removed) would
  // settle this one before its own jobs answer. (A flight being recorded has had its reports.)
  if (it == messages_.end() || flight == in_flight_.end() || flight->second.recording ||
      flight->second.serial != request_id)
    return;
  Envelope& e = it->second;
  const double delay = static_cast<double>(time(nullptr) - e.arrival);
  std::vector<Recipient> forwarded;
  for (const msg::DeliveryResult& r : report.results) {
    if (r.index >= e.recipients.size()) continue;
    Recipient& rcpt = e.recipients[r.index];
    if (rcpt.state != RecipientState::pending) continue;
    log::info("%s: to=<%s>, relay=local, delay=%.0f, dsn=%s, status=%s (%s)", e.id.c_str(),
              rcpt.address.c_str(), delay, r.dsn.c_str(), status_word(r.outcome), r.detail.c_str());
    switch (r.outcome) {
      case msg::DeliveryOutcome::delivered: {
        rcpt.state = RecipientState::delivered;
        ++delivered_;
        // Delivered here, or expanded by an alias to several destinations; an alias to one
        // address elsewhere passes its NOTIFY on, and the next hop reports (RFC 3461 6.2.7).
        if (r.expanded || r.forward.empty())
          flight->second.report_later(
              rcpt,
              {r.index, r.expanded ? DsnAction::expanded : DsnAction::delivered, r.dsn, r.detail});
        // An alias sends it on elsewhere: new recipients of this message, for mta, keeping
        // the original recipient for DSNs (RFC 3461 4.2).
        const DsnNotify notify = r.expanded ? notify_for_members(rcpt.notify) : rcpt.notify;
        for (const std::string& address : r.forward) {
          log::info("%s: to=<%s>, forwarded to <%s>", e.id.c_str(), rcpt.address.c_str(),
                    address.c_str());
          forwarded.push_back({.address = address,
                               .orcpt_type = rcpt.orcpt.empty() ? "rfc822" : rcpt.orcpt_type,
                               .orcpt = rcpt.orcpt.empty() ? rcpt.address : rcpt.orcpt,
                               .notify = notify,
                               .state = RecipientState::pending});
        }
        break;
      }
      case msg::DeliveryOutcome::permanent_failure:
        rcpt.state = RecipientState::failed;
        ++bounced_;
        flight->second.report_later(rcpt, {r.index, DsnAction::failed, r.dsn, r.detail});
        break;
      case msg::DeliveryOutcome::temporary_failure:
        ++deferred_;
        rcpt.last_error = (r.dsn + " " + r.detail).substr(0, kMaxLastError);
        break;
    }
  }
  for (Recipient& f : forwarded) e.recipients.push_back(std::move(f));
  if (report.last && --flight->second.batches == 0) settle(report.id);
  update_counters();
}

// Every batch of a dispatch has answered: record the states, then retry or remove. The
// message stays in delivery until the record is durable (recorded).
void Scheduler::settle(const std::string& id) {
  Flight& flight = in_flight_.at(id);
  flight.recording = true;
  const uint32_t serial = flight.serial;
  Envelope& e = messages_.at(id);
  expire_if_due(e, flight);
  report_delay_if_due(e, flight);
  if (!flight.outcomes.empty()) notify_sender(e, flight.outcomes);
  flight.outcomes.clear();
  bool local_pending = false;
  bool any_pending = false;
  for (const Recipient& r : e.recipients) {
    if (r.state != RecipientState::pending) continue;
    any_pending = true;
    local_pending = local_pending || is_local(r.address);
  }
  if (!any_pending) {
    remove_from_spool(id, "removed", serial);
    hurry_records_if_blocked();
    return;
  }
  if (local_pending) {
    // The delay doubles with the attempts of the recipient tried most, up to the cap.
    uint32_t attempts = 1;
    for (const Recipient& r : e.recipients)
      if (r.state == RecipientState::pending && is_local(r.address))
        attempts = std::max(attempts, r.attempts);
    const std::chrono::seconds retry_max(settings_.retry_max);
    auto wait = std::chrono::seconds(settings_.retry_first) *
                (int64_t{1} << std::min<uint32_t>(attempts - 1, 20));
    if (wait > retry_max) wait = retry_max;
    e.next_try = time(nullptr) + wait.count();
    retry_at(id, wait);
  }
  // States, attempts, errors and the next try, so that a restart goes on where this left off.
  Envelope copy = e;
  // Tasks run on the committer's thread, which may outlive the scheduler: they hold only
  // what they need (the spool outlives the committer).
  committer_.run([&spool = spool_, copy] { return spool.update_envelope(copy); },
                 [this, id, serial](const Status& st) {
                   if (!st.ok())
                     log::error("%s: cannot record delivery states: %s", id.c_str(),
                                st.error().message.c_str());
                   recorded(id, serial);
                 });
  hurry_records_if_blocked();
}

// A message older than the expiry fails its pending local recipients with 4.4.7.
void Scheduler::expire_if_due(Envelope& e, Flight& flight) {
  if (time(nullptr) - e.arrival < int64_t{settings_.expire}) return;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    Recipient& r = e.recipients[i];
    if (r.state != RecipientState::pending || !is_local(r.address)) continue;
    r.state = RecipientState::failed;
    ++bounced_;
    const Outcome expired{.index = static_cast<uint32_t>(i),
                          .action = DsnAction::failed,
                          .status = "4.4.7",
                          .detail = "message expired after too long in the queue"};
    log::info("%s: to=<%s>, relay=local, dsn=4.4.7, status=bounced (%s)", e.id.c_str(),
              r.address.c_str(), expired.detail.c_str());
    flight.report_later(r, expired);
  }
}

// Once a message has waited limits.delay_warning, its local recipients still pending are
// reported as delayed (to senders whose NOTIFY asked for DELAY), once per message: the envelope
// records it.
void Scheduler::report_delay_if_due(Envelope& e, Flight& flight) const {
  if (settings_.delay_warning == 0 || e.delay_reported) return;
  if (time(nullptr) - e.arrival < int64_t{settings_.delay_warning}) return;
  e.delay_reported = true;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    const Recipient& r = e.recipients[i];
    if (r.state != RecipientState::pending || !is_local(r.address)) continue;
    // last_error is "4.2.2 mailbox over quota".
    const size_t space = r.last_error.find(' ');
    const bool coded = space != std::string::npos && r.last_error.starts_with("4.");
    flight.report_later(r, {.index = static_cast<uint32_t>(i),
                            .action = DsnAction::delayed,
                            .status = coded ? r.last_error.substr(0, space) : "4.0.0",
                            .detail = coded ? r.last_error.substr(space + 1) : r.last_error});
  }
}

// RFC 3464 notification to the sender of the outcomes kept (Flight::report_later), queued like
// any message; never to <> (RFC 5321 4.5.5).
void Scheduler::notify_sender(const Envelope& e, const std::vector<Outcome>& outcomes) {
  std::vector<ReportedRecipient> report;
  for (const Outcome& o : outcomes)
    if (o.index < e.recipients.size())
      report.push_back(
          {&e.recipients[o.index], o.action, o.status, o.detail, e.arrival + settings_.expire});
  if (report.empty()) return;
  const DsnAction worst = headline(report);
  const char* kind = worst == DsnAction::failed    ? "non-delivery"
                     : worst == DsnAction::delayed ? "delay"
                                                   : "delivery";
  if (e.sender.empty()) {
    log::info("%s: no %s notification for the null sender", e.id.c_str(), kind);
    return;
  }
  Result<UniqueFd> data = spool_.open_message(e.id);
  // (Our own spool file, whose size was checked when it was received.)
  Result<std::string> read =
      data.ok() ? read_message({data->get(), e.size}) : Result<std::string>(data.error());
  const std::string original = read.ok() ? std::move(read).value() : std::string();
  Result<NewMessage> created = spares_.take();
  if (!created.ok()) {
    log::error("%s: cannot create its %s notification: %s", e.id.c_str(), kind,
               created.error().message.c_str());
    return;
  }
  NewMessage& m = created.value();
  const std::string text = make_dsn(e, report, original, settings_.hostname, m.id, time(nullptr));
  if (Status written = write_all(m.ours.get(), text); !written.ok()) {
    log::error("%s: cannot write its %s notification: %s", e.id.c_str(), kind,
               written.error().message.c_str());
    spool_.discard(m.id);
    return;
  }
  Envelope b;
  b.id = m.id;
  b.arrival = time(nullptr);
  b.sender = "";
  b.helo = settings_.hostname;
  b.client_address = "127.0.0.1";
  b.listener = "dsn";
  b.recipients.push_back(Recipient{.address = e.sender,
                                   .orcpt_type = "",
                                   .orcpt = "",
                                   .notify = {},
                                   .state = RecipientState::pending});
  const std::string original_id = e.id;
  committer_.submit(std::move(b), std::move(m),
                    [this, original_id, kind](const Envelope& queued, const Status& st) {
                      if (!st.ok()) {
                        log::error("%s: cannot queue its %s notification: %s", original_id.c_str(),
                                   kind, st.error().message.c_str());
                        spool_.discard(queued.id);
                        return;
                      }
                      log::info("%s: sender %s notification: %s", original_id.c_str(), kind,
                                queued.id.c_str());
                      add(queued);
                    });
}

void Scheduler::remove_from_spool(const std::string& id, const char* why, uint32_t serial) {
  // The data file goes first; an envelope file left only after that is durable (spool.hpp).
  auto envelope_left = std::make_shared<bool>(false);
  committer_.run(
      [&spool = spool_, id, envelope_left]() -> Status {
        Result<bool> removed = spool.remove(id);
        if (!removed.ok()) return removed.error();
        *envelope_left = removed.value();
        return ok_status();
      },
      [this, id, why, envelope_left, serial](const Status& st) {
        if (!st.ok()) {
          log::error("%s: cannot remove: %s", id.c_str(), st.error().message.c_str());
          recorded(id, serial);
          return;
        }
        log::info("%s: %s", id.c_str(), why);
        messages_.erase(id);
        retries_.erase(id);
        recorded(id, serial);
        update_counters();
        if (*envelope_left)
          committer_.run([&spool = spool_, id] { return spool.remove_envelope(id); },
                         [id](const Status& gone) {
                           // The next start finishes it: an envelope without data is removed.
                           if (!gone.ok())
                             log::warn("%s: cannot remove its envelope file: %s", id.c_str(),
                                       gone.error().message.c_str());
                         });
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
  const int64_t now = time(nullptr);
  for (const std::string& id : ids) {
    if (auto timer = retries_.find(id); timer != retries_.end()) timer->second->cancel();
    // Due now, also for mda_ready() should it find the message waiting for a place.
    Envelope& e = messages_.at(id);
    e.next_try = std::min(e.next_try, now);
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
    if (waiting_ids_.erase(id) != 0) std::erase(waiting_, id);
    if (auto flight = in_flight_.find(id); flight != in_flight_.end()) end_flight(flight);
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
  // What waits for a retry keeps waiting; what was due, or in the hands of a lost mda, goes.
  const int64_t now = time(nullptr);
  for (const auto& [id, e] : messages_)
    if (e.next_try <= now) dispatch(id);
}

void Scheduler::mda_lost() {
  // Whatever mda had in hand is pending again; a delivery it finished but did not report
  // is repeated (at least once). Outcomes it reported stay in delivery until recorded.
  std::erase_if(in_flight_, [](const auto& flight) { return !flight.second.recording; });
  update_counters();
}

void Scheduler::update_counters() {
  auto& c = runtime_.counters();
  c["queued"] = messages_.size();
  c["delivered"] = delivered_;
  c["deferred"] = deferred_;
  c["bounced"] = bounced_;
  c["delivering"] = in_flight_.size();
  c["waiting"] = waiting_.size();
}

}  // namespace postern::queue
