// The scheduler: which committed message goes where next. A message's recipients take one of
// two lanes: local ones (in a local domain) go to mda as one job, remote ones to mta as one
// job (each in batches that fit a frame); both lanes of one message may be out at once, and
// both processes' reports update the same envelope. Each result updates the recipient's state
// in the spool; temporary failures are retried with backoff per lane (for mta never sooner
// than the destination's retry_after), the attempts, last errors and next try kept in the
// envelope so that a restart keeps the schedule; a message whose every recipient is done
// leaves the spool.
//
// A lane of a message is "in delivery" from the job handed to mda or mta until its outcome is
// durable in the spool (envelope updated or message removed); it is not handed out again
// before then, and at most limits.in_delivery messages are at mda and limits.in_relay at mta,
// the rest waiting their turn: the lanes have their own places, so a slow or throttled
// destination never takes the places local delivery needs, nor the reverse. A crash of the
// queue, of mda or of mta loses what they finished but the spool does not yet record: those,
// and only those, are delivered again, so a crash repeats at most the deliveries of the
// messages in delivery.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <span>
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

// Messages at mta at once (limits.in_relay). A place there is held for as long as remote servers
// take (a round trip of milliseconds to a timeout of minutes), far longer than a local
// delivery, and mta needs many messages in hand to batch recipients per destination and keep
// connections to many destinations busy (100 destinations with several connections each take
// hundreds of messages); each costs mta one descriptor (the daemon raises its limit to 65,536)
// and a kill -9 of mta re-sends at most these. So the default is 1,000.

// Which process delivers a recipient: mda (local domains) or mta (the rest).
enum class Lane : uint8_t { local, remote };
constexpr size_t kLanes = 2;

class Scheduler {
 public:
  Scheduler(ChildRuntime& runtime, Spool& spool, Spares& spares, Committer& committer);

  void configure(const Settings& settings);
  // A message just committed, or found at start: its pending recipients go out now (unless
  // their retry is still ahead).
  void add(Envelope envelope);
  // from: mda or mta, the process that sent it; request_id: the one the job went with (its
  // flight's serial). A report for another process's job, or for a recipient not in the job,
  // changes nothing.
  void on_report(const msg::DeliveryReport& report, Role from, uint32_t request_id);
  // mda or mta (re)connected: everything of its lane that is due goes (again); lost: what it
  // had in hand is pending again.
  void peer_ready(Role peer);
  void peer_lost(Role peer);

  // smtpctl: retry now; remove without delivering; hold the deliveries of mda or mta. Each
  // returns what to tell the administrator.
  Result<std::string> schedule(const std::string& id_or_all);
  Result<std::string> remove(const std::string& id_or_all);
  std::string pause_deliveries(Role target, bool pause);
  // Hold (or let go) one message, or every recipient in a destination domain: held recipients
  // are not handed to mda or mta until resumed; what is already out finishes. Kept in memory
  // only: a restart of the queue lets everything go.
  Result<std::string> hold_message(const std::string& id, bool hold);
  std::string hold_domain(const std::string& domain, bool hold);
  bool held_message(const std::string& id) const { return held_messages_.contains(id); }
  // The held domain the address is in, "" when none.
  std::string held_domain_of(const std::string& address) const;
  // Removed by smtpctl, its files on their way out: no view shows it, no remove counts it again.
  bool removing(const std::string& id) const { return removing_.contains(id); }

  const std::map<std::string, Envelope>& messages() const { return messages_; }
  // At mda or mta (a flight being recorded has its next try set).
  bool in_flight(const std::string& id, Lane lane) const {
    const auto& flights = lanes_[static_cast<size_t>(lane)].in_flight;
    auto flight = flights.find(id);
    return flight != flights.end() && !flight->second.recording;
  }
  bool paused(Lane lane) const { return lanes_[static_cast<size_t>(lane)].paused; }
  // When the lane's pending recipients of the message are tried next (unix seconds).
  int64_t next_try(const std::string& id, Lane lane) const;
  // In a local domain (as the parent's configuration says): mda's to deliver.
  bool is_local(const std::string& address) const;
  Lane lane_of(const std::string& address) const {
    return is_local(address) ? Lane::local : Lane::remote;
  }

 private:
  // A recipient's outcome for the sender's notification, by index (the recipients may grow
  // while a flight is out: aliases add forwards).
  struct Outcome {
    uint32_t index = 0;
    DsnAction action = DsnAction::failed;
    std::string status;
    std::string detail;
    std::string remote_mta;  // the server that answered, if any (a DSN's Remote-MTA)
    std::string tls;         // how the connection to it was protected, if it was
  };
  struct Flight {
    // Which flight of the message: its jobs' request id, which mda's and mta's reports carry
    // back, and what a record's callback checks.
    uint32_t serial = 0;
    bool recording = false;  // the jobs have answered; the outcome is on its way into the spool
    size_t batches = 0;      // job frames not yet answered
    // The recipients handed out and not answered yet: a result for any other is refused.
    std::set<uint32_t> out;
    // Not before (unix seconds): the latest retry_after of mta's temporary failures.
    int64_t not_before = 0;
    // Failed for good, delayed, delivered or expanded: only those the recipient's NOTIFY asks
    // to hear of (report_later), so a fanout nobody asked about keeps none.
    std::vector<Outcome> outcomes;
    void report_later(const Recipient& r, Outcome o) {
      if (wants_report(r, o.action)) outcomes.push_back(std::move(o));
    }
  };
  using Flights = std::map<std::string, Flight>;
  struct LaneState {
    Role peer = Role::mda;
    const char* name = "";  // in the log ("local", "remote")
    uint32_t places = 0;    // limits.in_delivery or limits.in_relay
    bool paused = false;
    Flights in_flight;                  // in delivery
    std::deque<std::string> waiting;    // due, waiting for a place in delivery
    std::set<std::string> waiting_ids;  // the same, to look up
  };
  // A message's next try in one lane, and the timer that brings it.
  struct Retry {
    int64_t next_try = 0;
    std::unique_ptr<Timer> timer;
  };
  using Retries = std::array<Retry, kLanes>;

  LaneState& lane(Lane l) { return lanes_[static_cast<size_t>(l)]; }
  // The pending recipients of the lane that are not out in the other lane's flight.
  std::vector<uint32_t> pending_in(const Envelope& e, Lane l) const;
  bool out_elsewhere(const std::string& id, Lane l, uint32_t index) const;
  void dispatch(Lane l, const std::string& id);
  void dispatch_all_due(Lane l);
  void handed_out(Envelope& e, Flight& flight, std::span<const uint32_t> batch);
  bool send_local(Envelope& e, const std::vector<uint32_t>& todo, int data, Flight& flight,
                  ipc::Channel& mda);
  bool send_remote(Envelope& e, const std::vector<uint32_t>& todo, int data, Flight& flight,
                   ipc::Channel& mta);
  void apply(Envelope& e, Lane l, Flight& flight, const msg::DeliveryResult& r,
             std::vector<Recipient>& forwarded);
  // The flight's outcome is durable (or could not be recorded): the message may go again, and
  // a waiting one takes its place.
  void recorded(Lane l, const std::string& id, uint32_t serial);
  void end_flight(Lane l, Flights::iterator flight);
  void dispatch_waiting(Lane l);
  void hurry_records_if_blocked(Lane l);
  void retry_at(Lane l, const std::string& id, std::chrono::seconds wait);
  void settle(Lane l, const std::string& id);
  void expire_if_due(Envelope& e, Lane l, Flight& flight);
  void report_delay_if_due(Envelope& e, Flight& flight) const;
  void notify_sender(const Envelope& e, const std::vector<Outcome>& outcomes);
  // serial: the flight whose outcome this records, if any.
  void remove_from_spool(const std::string& id, const char* why, Lane l = Lane::local,
                         uint32_t serial = 0);
  std::vector<std::string> select(const std::string& id_or_all, std::string& error) const;
  void update_counters();
  void count_ages();

  ChildRuntime& runtime_;
  Spool& spool_;
  Spares& spares_;  // notifications' files
  Committer& committer_;
  // Retry delays double from the first to the cap; after delay_warning, recipients still
  // waiting are reported to senders that asked (NOTIFY=DELAY).
  Settings settings_;
  std::set<std::string, std::less<>> local_domains_;  // settings_.local_domains, to look up
  std::map<std::string, Envelope> messages_;  // committed, by id
  std::array<LaneState, kLanes> lanes_;
  // The last serial; it starts at random, so that a report for a job of an earlier queue
  // process (mda's deliveries go on while the queue restarts) matches no flight of this one.
  uint32_t flights_ = 0;
  std::map<std::string, Retries> retries_;
  std::set<std::string> removing_;
  std::set<std::string> held_messages_;
  std::set<std::string, std::less<>> held_domains_;  // lower case
  uint64_t delivered_ = 0;
  uint64_t deferred_ = 0;
  // Reported by mda and mta: the sums of their counters of the same names. Expiries are the
  // queue's own (4.4.7), counted apart.
  uint64_t bounced_ = 0;
  uint64_t expired_ = 0;
};

}  // namespace postern::queue
