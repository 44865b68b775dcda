// Message files made ahead of need: a few empty queue/<id>.msg + .env pairs whose names are
// already durable, so that neither receiving a message (inode allocation: 0.2-0.4 ms a file
// on a busy ext4) nor its commit (a directory fsync) pays for making names. Used on the queue's
// event loop only; what it makes is removed at the next start if unused (spool.cpp recover).
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "common/event.hpp"
#include "common/result.hpp"
#include "queue/committer.hpp"
#include "queue/spool.hpp"

namespace postern::queue {

// How many spares are kept ready.
constexpr size_t kSpares = 16;

class Spares {
 public:
  // Makes the first spares at once.
  Spares(event_base* base, Spool& spool, Committer& committer);

  // A new message's files: a spare when one is ready, else made now (its names then made
  // durable by its commit). Replacements are made on the next turn of the event loop, after
  // the caller has answered.
  Result<NewMessage> take();
  size_t ready() const { return ready_.size(); }

 private:
  void top_up();

  Spool& spool_;
  Committer& committer_;
  std::deque<NewMessage> ready_;      // names durable
  std::vector<NewMessage> unsynced_;  // made, waiting for the directory fsync
  size_t syncing_ = 0;                // made, in the directory fsync under way
  Timer top_up_timer_;
};

}  // namespace postern::queue
