// The scheduler: which committed message goes where next. Local recipients of a message are
// handed to mda as one job (in batches that fit a frame); each result updates the
// recipient's state in the spool; temporary failures are retried with backoff, the attempts,
// last errors and next try kept in the envelope so that a restart keeps the schedule; a
// message whose every recipient is done leaves the spool. Remote recipients wait for the mta.
//
// A message is "in delivery" from the job handed to mda until its outcome is durable in the
// spool (envelope updated or message removed); it is not handed out again before then, and at
// most limits.in_delivery are in delivery at once, the rest waiting their turn. A crash of
// the queue or of mda loses what mda finished but the spool does not yet record: those, and
// only those, are delivered again, so a crash repeats at most limits.in_delivery messages'
// deliveries.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/ipc/child.hpp"
#include "common/mail/envelope.hpp"
#include "common/util/event.hpp"
#include "queue/api.hpp"
#include "queue/committer.hpp"
#include "queue/dsn.hpp"
#include "queue/spares.hpp"
#include "queue/spool.hpp"

namespace postern::queue {

// Messages in delivery at once (limits.in_delivery, see above). Each holds its place for mda's
// delivery (1.5 ms for a Maildir alone, far longer under load, when jobs queue up in mda),
// then the spool's record, which gathers for up to 10 ms to share a directory fsync
// (committer.hpp) unless messages wait for a place. Measured with
// tests/bench/deliver_throughput.py (4,000 messages, 10 and 50 sessions, msg/s): 32 places
// 830-1,070, 64 places 920-1,060, 128 places 1,090-1,300, no limit 910-1,290; so the default
// is 128, which bounds what a crash repeats and does not hold delivery back.

class Scheduler {
 public:
  Scheduler(ChildRuntime& runtime, Spool& spool, Spares& spares, Committer& committer);

  void configure(const Settings& settings);
  // A message just committed, or found at start: its pending local recipients go out now.
  void add(Envelope envelope);
  // request_id: the one the job went with (its flight's serial).
  void on_report(const msg::DeliveryReport& report, uint32_t request_id);
  // mda (re)connected: everything pending goes (again); mda lost: what it had is pending.
  void mda_ready();
  void mda_lost();

  // smtpctl: retry now; remove without delivering; hold local deliveries. Each returns what
  // to tell the administrator.
  Result<std::string> schedule(const std::string& id_or_all);
  Result<std::string> remove(const std::string& id_or_all);
  std::string pause_deliveries(bool pause);

  const std::map<std::string, Envelope>& messages() const { return messages_; }
  // At mda (a flight being recorded has its next try set).
  bool in_flight(const std::string& id) const {
    auto flight = in_flight_.find(id);
    return flight != in_flight_.end() && !flight->second.recording;
  }
  bool paused() const { return paused_; }
  // In a local domain (as the parent's configuration says): mda's to deliver.
  bool is_local(const std::string& address) const;

 private:
  // A recipient's outcome for the sender's notification, by index (the recipients may grow
  // while a flight is out: aliases add forwards).
  struct Outcome {
    uint32_t index = 0;
    DsnAction action = DsnAction::failed;
    std::string status;
    std::string detail;
  };
  struct Flight {
    // Which flight of the message: its jobs' request id, which mda's reports carry back, and
    // what a record's callback checks.
    uint32_t serial = 0;
    bool recording = false;  // mda has answered; the outcome is on its way into the spool
    size_t batches = 0;      // DeliverLocal frames not yet answered
    // Failed for good, delayed, delivered or expanded: only those the recipient's NOTIFY asks
    // to hear of (report_later), so a fanout nobody asked about keeps none.
    std::vector<Outcome> outcomes;
    void report_later(const Recipient& r, Outcome o) {
      if (wants_report(r, o.action)) outcomes.push_back(std::move(o));
    }
  };
  void dispatch(const std::string& id);
  // The flight's outcome is durable (or could not be recorded): the message may go again, and
  // a waiting one takes its place.
  void recorded(const std::string& id, uint32_t serial);
  void end_flight(std::map<std::string, Flight>::iterator flight);
  void dispatch_waiting();
  void hurry_records_if_blocked();
  void retry_at(const std::string& id, std::chrono::seconds wait);
  void settle(const std::string& id);
  void expire_if_due(Envelope& e, Flight& flight);
  void report_delay_if_due(Envelope& e, Flight& flight) const;
  void notify_sender(const Envelope& e, const std::vector<Outcome>& outcomes);
  // serial: the flight whose outcome this records, if any.
  void remove_from_spool(const std::string& id, const char* why, uint32_t serial = 0);
  std::vector<std::string> select(const std::string& id_or_all, std::string& error) const;
  void update_counters();

  ChildRuntime& runtime_;
  Spool& spool_;
  Spares& spares_;  // notifications' files
  Committer& committer_;
  // Retry delays double from the first to the cap; after delay_warning, recipients still
  // waiting are reported to senders that asked (NOTIFY=DELAY).
  Settings settings_;
  std::set<std::string, std::less<>> local_domains_;  // settings_.local_domains, to look up
  std::map<std::string, Envelope> messages_;  // committed, by id
  std::map<std::string, Flight> in_flight_;   // in delivery
  std::deque<std::string> waiting_;           // due, waiting for a place in delivery
  std::set<std::string> waiting_ids_;         // the same, to look up
  // The last serial; it starts at random, so that a report for a job of an earlier queue
  // process (mda's deliveries go on while the queue restarts) matches no flight of this one.
  uint32_t flights_ = 0;
  std::map<std::string, std::unique_ptr<Timer>> retries_;
  bool paused_ = false;
  uint64_t delivered_ = 0;
  uint64_t deferred_ = 0;
  uint64_t bounced_ = 0;
};

}  // namespace postern::queue
