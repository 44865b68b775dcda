// The scheduler; see scheduler.hpp.
#include "queue/scheduler.hpp"

#include <fcntl.h>
#include <sys/random.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <span>

#include "common/util/ascii.hpp"
#include "common/util/io.hpp"
#include "common/util/log.hpp"
#include "mda/api.hpp"
#include "mta/api.hpp"
#include "queue/api.hpp"
#include "queue/dsn.hpp"
#include "queue/envelope_file.hpp"

namespace postern::queue {
namespace {

// "name[address]:port" as mta reports the server: the host a DSN's Remote-MTA names (the name,
// or the address when the server has none).
std::string remote_host(const std::string& remote_mta) {
  const size_t open = remote_mta.find('[');
  if (open == std::string::npos) return remote_mta;
  if (open > 0) return remote_mta.substr(0, open);
  const size_t close = remote_mta.find(']', open);
  return remote_mta.substr(open + 1, close == std::string::npos ? close : close - open - 1);
}

}  // namespace

Scheduler::Scheduler(ChildRuntime& runtime, Spool& spool, Spares& spares, Committer& committer)
    : runtime_(runtime), spool_(spool), spares_(spares), committer_(committer) {
  // A clock would do as well; a failure leaves 0, which only makes an old report's match
  // likelier.
  (void)!getrandom(&flights_, sizeof flights_, 0);
  lane(Lane::local).peer = Role::mda;
  lane(Lane::local).name = "local";
  lane(Lane::remote).peer = Role::mta;
  lane(Lane::remote).name = "remote";
  update_counters();
  runtime_.on_status([this] { count_ages(); });
}

// The queue's shape by age, for metrics: one pass over the messages, only when asked.
void Scheduler::count_ages() {
  struct Bucket {
    int64_t below = 0;  // seconds
    const char* counter = nullptr;
    uint64_t messages = 0;
  };
  std::array<Bucket, 6> buckets{{{300, "age:lt_5m"},
                                 {3600, "age:lt_1h"},
                                 {4 * 3600, "age:lt_4h"},
                                 {24 * 3600, "age:lt_1d"},
                                 {5 * 24 * 3600, "age:lt_5d"},
                                 {INT64_MAX, "age:ge_5d"}}};
  const int64_t now = time(nullptr);
  for (const auto& [id, envelope] : messages_) {
    const int64_t age = now - envelope.arrival;
    for (Bucket& b : buckets)
      if (age < b.below) {
        ++b.messages;
        break;
      }
  }
  for (const Bucket& b : buckets) runtime_.counters()[b.counter] = b.messages;
}

void Scheduler::configure(const Settings& settings) {
  settings_ = settings;
  local_domains_ = {settings.local_domains.begin(), settings.local_domains.end()};
  lane(Lane::local).places = settings.in_delivery;
  lane(Lane::remote).places = settings.in_relay;
}

bool Scheduler::is_local(const std::string& address) const {
  const size_t at = address.rfind('@');
  if (at == std::string::npos) return true;  // <postmaster>
  return local_domains_.contains(std::string_view(address).substr(at + 1));
}

int64_t Scheduler::next_try(const std::string& id, Lane l) const {
  auto it = retries_.find(id);
  return it == retries_.end() ? 0 : it->second[static_cast<size_t>(l)].next_try;
}

void Scheduler::add(Envelope envelope) {
  const std::string id = envelope.id;
  const int64_t next_try = envelope.next_try;
  messages_[id] = std::move(envelope);
  update_counters();
  // Found at start with a retry still ahead: the backoff holds across restarts. (The spool
  // keeps one next try, the earliest of the lanes'.)
  const int64_t now = time(nullptr);
  for (Lane l : {Lane::local, Lane::remote}) {
    if (next_try > now) {
      retry_at(l, id, std::chrono::seconds(next_try - now));
    } else {
      retries_[id][static_cast<size_t>(l)].next_try = next_try;
      dispatch(l, id);
    }
  }
}

void Scheduler::retry_at(Lane l, const std::string& id, std::chrono::seconds wait) {
  Retry& retry = retries_[id][static_cast<size_t>(l)];
  retry.next_try = time(nullptr) + wait.count();
  if (!retry.timer)
    retry.timer = std::make_unique<Timer>(runtime_.base(), [this, l, id] { dispatch(l, id); });
  retry.timer->arm(std::chrono::duration_cast<std::chrono::milliseconds>(wait));
}

bool Scheduler::out_elsewhere(const std::string& id, Lane l, uint32_t index) const {
  const Lane other = l == Lane::local ? Lane::remote : Lane::local;
  const Flights& flights = lanes_[static_cast<size_t>(other)].in_flight;
  auto flight = flights.find(id);
  return flight != flights.end() && flight->second.out.contains(index);
}

std::vector<uint32_t> Scheduler::pending_in(const Envelope& e, Lane l) const {
  std::vector<uint32_t> todo;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    const Recipient& r = e.recipients[i];
    // A reload that moved a domain between the lanes leaves a recipient out in the other lane
    // until its result comes: never out twice.
    if (r.state == RecipientState::pending && lane_of(r.address) == l &&
        !out_elsewhere(e.id, l, static_cast<uint32_t>(i)) && held_domain_of(r.address).empty())
      todo.push_back(static_cast<uint32_t>(i));
  }
  return todo;
}

void Scheduler::dispatch(Lane l, const std::string& id) {
  LaneState& state = lane(l);
  auto it = messages_.find(id);
  if (it == messages_.end() || state.in_flight.contains(id) || state.paused ||
      held_messages_.contains(id) || removing_.contains(id))
    return;
  ipc::Channel* peer = runtime_.peer(state.peer);
  if (peer == nullptr) return;  // peer_ready() sends it
  Envelope& e = it->second;
  const std::vector<uint32_t> todo = pending_in(e, l);
  if (todo.empty()) return;
  if (state.in_flight.size() >= state.places) {
    if (state.waiting_ids.insert(id).second) state.waiting.push_back(id);
    hurry_records_if_blocked(l);
    update_counters();
    return;
  }
  Result<UniqueFd> data = spool_.open_message(id);
  if (!data.ok()) {
    log::error("%s: %s", id.c_str(), data.error().message.c_str());
    return;
  }
  Flight& flight = state.in_flight[id];
  flight.serial = ++flights_ != 0 ? flights_ : ++flights_;  // (0: none)
  const bool sent = l == Lane::local ? send_local(e, todo, data->get(), flight, *peer)
                                     : send_remote(e, todo, data->get(), flight, *peer);
  if (!sent)
    log::warn("%s: cannot hand the message to %s", id.c_str(),
              std::string(role_name(state.peer)).c_str());
  if (flight.batches == 0) {
    // Nothing went (the peer's channel has a full queue of frames): try again shortly rather
    // than wait for the next peer_ready() or smtpctl schedule. A message some of whose batches
    // went has its retry set when they settle.
    state.in_flight.erase(id);
    retry_at(l, id, std::chrono::seconds(1));
  }
  update_counters();
}

void Scheduler::recorded(Lane l, const std::string& id, uint32_t serial) {
  Flights& flights = lane(l).in_flight;
  auto flight = flights.find(id);
  if (flight == flights.end() || flight->second.serial != serial) return;
  end_flight(l, flight);
  // A retry that came due while the outcome was being recorded found it in delivery; an alias
  // may have added recipients for the other lane.
  if (!messages_.contains(id)) return;
  const int64_t now = time(nullptr);
  for (Lane each : {Lane::local, Lane::remote})
    if (next_try(id, each) <= now) dispatch(each, id);
}

void Scheduler::end_flight(Lane l, Flights::iterator flight) {
  lane(l).in_flight.erase(flight);
  dispatch_waiting(l);
  update_counters();
}

// Messages wait for a place: records gathering for a shared directory fsync would keep them
// waiting. Records still share one, those that come while the thread syncs the last batch.
// Only the lane's own records free its places: a full mta lane does not cost local records
// their shared fsync.
void Scheduler::hurry_records_if_blocked(Lane l) {
  if (!lane(l).waiting.empty()) committer_.hurry();
}

void Scheduler::dispatch_waiting(Lane l) {
  LaneState& state = lane(l);
  while (!state.waiting.empty() && state.in_flight.size() < state.places) {
    const std::string id = std::move(state.waiting.front());
    state.waiting.pop_front();
    state.waiting_ids.erase(id);
    dispatch(l, id);
  }
}

void Scheduler::on_report(const msg::DeliveryReport& report, Role from, uint32_t request_id) {
  const Lane l = from == Role::mta ? Lane::remote : Lane::local;
  Flights& flights = lane(l).in_flight;
  auto it = messages_.find(report.id);
  auto flight = flights.find(report.id);
  // A report for another flight (of an earlier queue process, or one smtpctl removed, or the
  // other process's) would settle this one before its own jobs answer. (A flight being
  // recorded has had its reports.)
  if (it == messages_.end() || flight == flights.end() || flight->second.recording ||
      flight->second.serial != request_id) {
    log::debug("%s: a report from %s for no job of its in delivery", report.id.c_str(),
               std::string(role_name(from)).c_str());
    return;
  }
  Envelope& e = it->second;
  std::vector<Recipient> forwarded;
  for (const msg::DeliveryResult& r : report.results) {
    if (flight->second.out.erase(r.index) == 0) {
      log::warn("%s: %s reported on recipient %u, which is not in its job; ignored", e.id.c_str(),
                std::string(role_name(from)).c_str(), r.index);
      continue;
    }
    apply(e, l, flight->second, r, forwarded);
  }
  for (Recipient& f : forwarded) e.recipients.push_back(std::move(f));
  if (report.last && --flight->second.batches == 0) settle(l, report.id);
  update_counters();
}

// One recipient's result, handed out in this flight and still pending.
void Scheduler::apply(Envelope& e, Lane l, Flight& flight, const msg::DeliveryResult& r,
                      std::vector<Recipient>& forwarded) {
  Recipient& rcpt = e.recipients[r.index];
  const double delay = static_cast<double>(time(nullptr) - e.arrival);
  const bool remote = l == Lane::remote;
  log::Line line(e.id);
  line.add("to", "<" + rcpt.address + ">")
      .add("relay", !remote                ? "local"
                    : r.remote_mta.empty() ? "none"
                                           : r.remote_mta);
  // The address it left from, when one is configured.
  if (!r.source.empty()) line.add("source", r.source);
  // How the connection was protected, when there was one to a server.
  if (!r.tls.empty()) line.add("tls", r.tls);
  char figures[96];
  std::snprintf(figures, sizeof figures, "%.0f", delay);
  line.add("delay", figures);
  // Remote: where the time went, as Postfix's delays=a/b/c/d: before the mta (the queue,
  // earlier attempts), waiting in it for a connection, setting one up, the transaction.
  if (remote) {
    const double b = r.wait_ms / 1000.0;
    const double c = r.setup_ms / 1000.0;
    const double d = r.transfer_ms / 1000.0;
    std::snprintf(figures, sizeof figures, "%.2f/%.2f/%.2f/%.2f", std::max(0.0, delay - b - c - d),
                  b, c, d);
    line.add("delays", figures);
  }
  line.add("dsn", r.dsn).add("status", msg::status_word(r.outcome)).comment(r.detail).info();
  switch (r.outcome) {
    case msg::DeliveryOutcome::delivered: {
      rcpt.state = RecipientState::delivered;
      ++delivered_;
      // Sent on to another server: it passes NOTIFY on, and the next hop reports (RFC 3461
      // 6.2.7), unless it takes no DSN: then this is the last word a sender who asked for
      // SUCCESS gets ("relayed", 6.2.7.2). mta has no aliases: only mda's word adds recipients.
      if (remote) {
        if (r.relayed)
          flight.report_later(rcpt, {r.index, DsnAction::relayed, r.dsn, r.detail,
                                     remote_host(r.remote_mta), r.tls});
        break;
      }
      // Delivered here, or expanded by an alias to several destinations; an alias to one
      // address elsewhere passes its NOTIFY on, and the next hop reports (RFC 3461 6.2.7).
      if (r.expanded || r.forward.empty())
        flight.report_later(rcpt, {r.index, r.expanded ? DsnAction::expanded : DsnAction::delivered,
                                   r.dsn, r.detail, "", ""});
      // An alias sends it on elsewhere: new recipients of this message, for mta, keeping
      // the original recipient for DSNs (RFC 3461 4.2).
      const DsnNotify notify = r.expanded ? notify_for_members(rcpt.notify) : rcpt.notify;
      for (const std::string& address : r.forward) {
        log::Line(e.id)
            .add("event", "forward")
            .add("to", "<" + rcpt.address + ">")
            .add("forward_to", "<" + address + ">")
            .info();
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
      flight.report_later(rcpt, {r.index, DsnAction::failed, r.dsn, r.detail,
                                 remote ? remote_host(r.remote_mta) : "", remote ? r.tls : ""});
      break;
    case msg::DeliveryOutcome::temporary_failure:
      ++deferred_;
      rcpt.last_error = (r.dsn + " " + r.detail).substr(0, kMaxLastError);
      if (remote && r.retry_after != 0)
        flight.not_before = std::max(flight.not_before, time(nullptr) + int64_t{r.retry_after});
      break;
  }
}

// Every batch of a dispatch has answered: record the states, then retry or remove. The
// message stays in delivery in this lane until the record is durable (recorded).
void Scheduler::settle(Lane l, const std::string& id) {
  Flight& flight = lane(l).in_flight.at(id);
  flight.recording = true;
  const uint32_t serial = flight.serial;
  Envelope& e = messages_.at(id);
  expire_if_due(e, l, flight);
  report_delay_if_due(e, flight);
  if (!flight.outcomes.empty()) notify_sender(e, flight.outcomes);
  flight.outcomes.clear();
  const bool any_pending = std::any_of(e.recipients.begin(), e.recipients.end(),
                                       [](auto& r) { return r.state == RecipientState::pending; });
  if (!any_pending) {
    remove_from_spool(id, "done", l, serial);
    hurry_records_if_blocked(l);
    return;
  }
  const std::vector<uint32_t> pending = pending_in(e, l);
  const int64_t now = time(nullptr);
  if (!pending.empty()) {
    // The delay doubles with the attempts of the recipient tried most, up to the cap; never
    // sooner than a destination asked (mta's retry_after).
    uint32_t attempts = 1;
    for (uint32_t i : pending) attempts = std::max(attempts, e.recipients[i].attempts);
    const std::chrono::seconds retry_max(settings_.retry_max);
    auto wait = std::chrono::seconds(settings_.retry_first) *
                (int64_t{1} << std::min<uint32_t>(attempts - 1, 20));
    if (wait > retry_max) wait = retry_max;
    wait = std::max(wait, std::chrono::seconds(flight.not_before - now));
    retry_at(l, id, wait);
  }
  // The spool keeps one next try: the earliest of the lanes with recipients waiting (a lane
  // out in delivery is due again at once should this process crash).
  e.next_try = 0;
  bool first = true;
  for (Lane each : {Lane::local, Lane::remote}) {
    if (pending_in(e, each).empty()) continue;
    const int64_t at = next_try(id, each);
    e.next_try = first ? at : std::min(e.next_try, at);
    first = false;
  }
  // States, attempts, errors and the next try, so that a restart goes on where this left off.
  Envelope copy = e;
  // Tasks run on the committer's thread, which may outlive the scheduler: they hold only
  // what they need (the spool outlives the committer).
  committer_.run(
      id, [&spool = spool_, copy] { return spool.update_envelope(copy); },
      [this, l, id, serial](const Status& st) {
        if (!st.ok())
          log::error("%s: cannot record delivery states: %s", id.c_str(),
                     st.error().message.c_str());
        recorded(l, id, serial);
      });
  hurry_records_if_blocked(l);
}

// A message older than the expiry fails its pending recipients with 4.4.7, in either lane,
// except those out in the other lane's job (its own settling expires them).
void Scheduler::expire_if_due(Envelope& e, Lane l, Flight& flight) {
  if (time(nullptr) - e.arrival < int64_t{settings_.expire}) return;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    Recipient& r = e.recipients[i];
    if (r.state != RecipientState::pending || out_elsewhere(e.id, l, static_cast<uint32_t>(i)))
      continue;
    r.state = RecipientState::failed;
    ++expired_;
    const Outcome expired{.index = static_cast<uint32_t>(i),
                          .action = DsnAction::failed,
                          .status = "4.4.7",
                          .detail = "message expired after too long in the queue",
                          .remote_mta = "",
                          .tls = ""};
    log::Line(e.id)
        .add("to", "<" + r.address + ">")
        .add("relay", is_local(r.address) ? "local" : "none")
        .add("dsn", "4.4.7")
        .add("status", "expired")
        .comment(expired.detail)
        .info();
    flight.report_later(r, expired);
  }
}

// Once a message has waited limits.delay_warning, its recipients still pending (local or
// remote) are reported as delayed (to senders whose NOTIFY asked for DELAY), once per message:
// the envelope records it.
void Scheduler::report_delay_if_due(Envelope& e, Flight& flight) const {
  if (settings_.delay_warning == 0 || e.delay_reported) return;
  if (time(nullptr) - e.arrival < int64_t{settings_.delay_warning}) return;
  e.delay_reported = true;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    const Recipient& r = e.recipients[i];
    if (r.state != RecipientState::pending) continue;
    // last_error is "4.2.2 mailbox over quota".
    const size_t space = r.last_error.find(' ');
    const bool coded = space != std::string::npos && r.last_error.starts_with("4.");
    flight.report_later(r, {.index = static_cast<uint32_t>(i),
                            .action = DsnAction::delayed,
                            .status = coded ? r.last_error.substr(0, space) : "4.0.0",
                            .detail = coded ? r.last_error.substr(space + 1) : r.last_error,
                            .remote_mta = "",
                            .tls = ""});
  }
}

// RFC 3464 notification to the sender of the outcomes kept (Flight::report_later), queued like
// any message; never to <> (RFC 5321 4.5.5).
void Scheduler::notify_sender(const Envelope& e, const std::vector<Outcome>& outcomes) {
  std::vector<ReportedRecipient> report;
  for (const Outcome& o : outcomes)
    if (o.index < e.recipients.size())
      report.push_back({&e.recipients[o.index], o.action, o.status, o.detail,
                        e.arrival + settings_.expire, o.remote_mta, o.tls});
  if (report.empty()) return;
  const DsnAction worst = headline(report);
  const char* kind = worst == DsnAction::failed    ? "non-delivery"
                     : worst == DsnAction::delayed ? "delay"
                                                   : "delivery";
  if (e.sender.empty()) {
    log::Line(e.id)
        .add("event", "notify")
        .add("kind", kind)
        .add("result", "skipped")
        .add("reason", "null sender")
        .info();
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
                      log::Line(original_id)
                          .add("event", "notify")
                          .add("kind", kind)
                          .add("result", "queued")
                          .add("notification", queued.id)
                          .info();
                      add(queued);
                    });
}

void Scheduler::remove_from_spool(const std::string& id, const char* why, Lane l, uint32_t serial) {
  // The data file goes first; an envelope file left only after that is durable (spool.hpp).
  auto envelope_left = std::make_shared<bool>(false);
  committer_.run(
      id,
      [&spool = spool_, id, envelope_left]() -> Status {
        Result<bool> removed = spool.remove(id);
        if (!removed.ok()) return removed.error();
        *envelope_left = removed.value();
        return ok_status();
      },
      [this, id, why, envelope_left, l, serial](const Status& st) {
        if (!st.ok()) {
          log::error("%s: cannot remove: %s", id.c_str(), st.error().message.c_str());
          removing_.erase(id);
          recorded(l, id, serial);
          return;
        }
        log::Line(id).add("event", "removed").add("reason", why).info();
        messages_.erase(id);
        retries_.erase(id);
        removing_.erase(id);
        held_messages_.erase(id);
        recorded(l, id, serial);
        update_counters();
        if (*envelope_left)
          committer_.run(
              id, [&spool = spool_, id] { return spool.remove_envelope(id); },
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
    for (const auto& [id, e] : messages_)
      if (!removing_.contains(id)) ids.push_back(id);
  } else if (valid_queue_id(id_or_all) && messages_.contains(id_or_all) &&
             !removing_.contains(id_or_all)) {
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
    Envelope& e = messages_.at(id);
    e.next_try = std::min(e.next_try, now);
    for (Lane l : {Lane::local, Lane::remote}) {
      // Due now, also for peer_ready() should it find the message waiting for a place.
      Retry& retry = retries_[id][static_cast<size_t>(l)];
      if (retry.timer) retry.timer->cancel();
      retry.next_try = std::min(retry.next_try, now);
      dispatch(l, id);
    }
  }
  // Only the lanes these messages wait in: a paused mda holds nothing of remote mail.
  std::string held;
  for (Lane l : {Lane::local, Lane::remote}) {
    const LaneState& state = lane(l);
    if (state.paused && std::any_of(ids.begin(), ids.end(), [&](const std::string& id) {
          return !pending_in(messages_.at(id), l).empty();
        }))
      held += (held.empty() ? "" : ", ") + std::string(role_name(state.peer));
  }
  return std::to_string(ids.size()) + " scheduled" +
         (held.empty() ? "" : " (deliveries by " + held + " are paused)");
}

Result<std::string> Scheduler::remove(const std::string& id_or_all) {
  std::string error;
  const std::vector<std::string> ids = select(id_or_all, error);
  if (!error.empty()) return make_error(error);
  for (const std::string& id : ids) {
    // A job already at mda or mta may still deliver; its report then finds nothing to update.
    for (Lane l : {Lane::local, Lane::remote}) {
      LaneState& state = lane(l);
      if (state.waiting_ids.erase(id) != 0) std::erase(state.waiting, id);
      if (auto flight = state.in_flight.find(id); flight != state.in_flight.end())
        end_flight(l, flight);
    }
    if (auto retry = retries_.find(id); retry != retries_.end())
      for (Retry& each : retry->second)
        if (each.timer) each.timer->cancel();
    removing_.insert(id);
    remove_from_spool(id, "smtpctl");
  }
  update_counters();
  return std::to_string(ids.size()) + " removed";
}

Result<std::string> Scheduler::hold_message(const std::string& id, bool hold) {
  if (!valid_queue_id(id) || !messages_.contains(id) || removing_.contains(id))
    return make_error("no message " + id);
  if (!hold) {
    if (held_messages_.erase(id) == 0) return id + " was not held";
    log::info("%s: resumed by smtpctl", id.c_str());
    for (Lane l : {Lane::local, Lane::remote})
      if (next_try(id, l) <= time(nullptr)) dispatch(l, id);
    return id + " resumed";
  }
  if (!held_messages_.insert(id).second) return id + " was held already";
  log::info("%s: held by smtpctl", id.c_str());
  return id + " held";
}

std::string Scheduler::hold_domain(const std::string& domain, bool hold) {
  const std::string key = ascii::lower(domain);
  if (!hold) {
    if (held_domains_.erase(key) == 0) return key + " was not held";
    log::info("deliveries to %s resumed by smtpctl", key.c_str());
    dispatch_all_due(Lane::local);
    dispatch_all_due(Lane::remote);
    return key + " resumed";
  }
  if (!held_domains_.insert(key).second) return key + " was held already";
  log::info("deliveries to %s held by smtpctl", key.c_str());
  return key + " held";
}

std::string Scheduler::held_domain_of(const std::string& address) const {
  if (held_domains_.empty()) return "";
  const size_t at = address.rfind('@');
  if (at == std::string::npos) return "";
  const std::string domain = ascii::lower(std::string_view(address).substr(at + 1));
  return held_domains_.contains(domain) ? domain : "";
}

std::string Scheduler::pause_deliveries(Role target, bool pause) {
  const Lane l = target == Role::mta ? Lane::remote : Lane::local;
  lane(l).paused = pause;
  log::info("%s deliveries %s", lane(l).name, pause ? "paused" : "resumed");
  if (!pause) dispatch_all_due(l);
  return std::string(role_name(lane(l).peer)) + (pause ? " paused" : " resumed");
}

void Scheduler::dispatch_all_due(Lane l) {
  // What waits for a retry keeps waiting; what was due, or in the hands of a lost peer, goes.
  const int64_t now = time(nullptr);
  std::vector<std::string> due;
  for (const auto& [id, e] : messages_)
    if (next_try(id, l) <= now) due.push_back(id);
  for (const std::string& id : due) dispatch(l, id);
}

void Scheduler::peer_ready(Role peer) {
  if (peer == Role::mda) dispatch_all_due(Lane::local);
  if (peer == Role::mta) dispatch_all_due(Lane::remote);
}

void Scheduler::peer_lost(Role peer) {
  if (peer != Role::mda && peer != Role::mta) return;
  // Whatever it had in hand is pending again; a delivery it finished but did not report is
  // repeated (at least once). Outcomes it reported stay in delivery until recorded.
  LaneState& state = lane(peer == Role::mta ? Lane::remote : Lane::local);
  const size_t before = state.in_flight.size();
  std::erase_if(state.in_flight, [](const auto& flight) { return !flight.second.recording; });
  if (before != state.in_flight.size())
    log::info("%s went away; %zu messages it had in hand go again",
              std::string(role_name(peer)).c_str(), before - state.in_flight.size());
  update_counters();
}

void Scheduler::update_counters() {
  auto& c = runtime_.counters();
  c["queued"] = messages_.size();
  c["delivered"] = delivered_;
  c["deferred"] = deferred_;
  c["bounced"] = bounced_;
  c["expired"] = expired_;
  c["held"] = held_messages_.size();
  c["delivering"] = lane(Lane::local).in_flight.size();
  c["waiting"] = lane(Lane::local).waiting.size();
  c["relaying"] = lane(Lane::remote).in_flight.size();
  c["relay_waiting"] = lane(Lane::remote).waiting.size();
}

}  // namespace postern::queue
