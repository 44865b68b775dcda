// The queue process's core: owns the spool (Spool, Committer, Spares, Scheduler) and answers
// smtp, mda, mta, lookup and smtpctl through the ChildRuntime it is given. It is the only code that
// creates, commits or removes message files; main.cpp only starts it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc/child.hpp"
#include "queue/api.hpp"
#include "queue/committer.hpp"
#include "queue/scheduler.hpp"
#include "queue/spares.hpp"
#include "queue/spool.hpp"
#include "queue/views.hpp"
#include "smtp/api.hpp"

namespace postern::queue {

class QueueProcess {
 public:
  explicit QueueProcess(ChildRuntime& runtime);
  QueueProcess(const QueueProcess&) = delete;
  QueueProcess& operator=(const QueueProcess&) = delete;
  // The committer's thread goes first: it finishes the spool work posted (updates and
  // removals are written before the process exits) while everything it touches still exists.
  ~QueueProcess();

 private:
  struct OpenMessage {
    NewMessage files;  // theirs already handed to smtp
    std::vector<Recipient> recipients;
  };
  // A committed message waiting for lookup's relay verdict.
  struct RelayInFlight {
    uint32_t smtp_request = 0;
    uint64_t session = 0;
    Envelope envelope;
    NewMessage files;
    std::vector<std::string> domains;  // remote recipient domains lookup has yet to confirm
  };

  void start();
  void answer_control(uint32_t request_id, const Result<std::string>& outcome);
  void reply(uint32_t request_id, const msg::MessageResult& result);
  void open(msg::Incoming& in);
  void add_recipients(msg::MessageRecipients& m);
  void commit(uint32_t request_id, msg::MessageCommit&& m);
  // Asks lookup about the next frame's worth of flight's domains.
  void ask_relay(RelayInFlight flight);
  // The message is removed and smtp told why.
  void refuse_relay(RelayInFlight flight, const msg::RelayVerdict& verdict);
  void relay_checked(uint32_t check_id, const msg::RelayVerdict& verdict);

  // lookup or smtp went away: the checks in flight are never answered. (Nothing was said to
  // a client yet; smtp answers 451 for what it was waiting on.)
  void drop_relay_checks(bool answer_smtp);

  void submit(uint32_t request_id, Envelope envelope, NewMessage files);
  // Commits a message and hands it to the scheduler; done learns whether it is queued.
  void enqueue(Envelope envelope, NewMessage files,
               std::function<void(const Envelope&, bool)> done);
  // A local submission the parent opened in the offline area: made into a message and queued,
  // the parent told the outcome (OfflineResult).
  void pick_up(UniqueFd file, const msg::OfflineMessage& m);
  void abort(const std::string& id);

  // smtp went away: nothing it had open can be committed any more.
  void forget_open_messages();

  // One page of a smtpctl view (views.hpp): its pieces, then its result.
  void send_page(uint32_t request_id, const Page& page);

  void update_counters();

  ChildRuntime& runtime_;
  std::string spool_dir_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<Committer> committer_;
  std::unique_ptr<Spares> spares_;  // after the committer, which it posts to
  std::map<std::string, OpenMessage> open_;
  std::map<uint32_t, RelayInFlight> relay_checks_;  // by request id to lookup
  uint32_t next_relay_check_ = 1;
  Settings config_;
  std::unique_ptr<Scheduler> scheduler_;  // after start(): owns the committed messages
  size_t committing_ = 0;
  uint64_t received_ = 0;  // messages committed from smtp (smtpctl monitor's recv/s)
};

}  // namespace postern::queue
