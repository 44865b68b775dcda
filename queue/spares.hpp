// Message files made ahead of need: a few empty queue/<id>.msg files whose names are already
// durable, so that neither receiving a message nor its commit (a directory fsync) pays
// for making names. They are made on the committer's task thread: creating a file can take
// 0.3-0.5 ms (on ext4 without a journal, inode allocation skips every inode freed in the last
// minute one by one, and a busy spool frees one or two per delivered message), which the queue's
// event loop must not wait for. Used on the event loop only; what it makes is removed at the
// next start if unused (spool.cpp recover).
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "common/util/result.hpp"
#include "queue/committer.hpp"
#include "queue/spool.hpp"

namespace postern::queue {

// How many spares are kept ready: at 1,000 messages a second, more than are used while the
// task thread gathers (10 ms) and makes the replacements.
constexpr size_t kSpares = 32;

class Spares {
 public:
  // Asks for the first spares. The committer's callbacks hold this object: destroy the
  // committer first, or destroy this one only when no spares are being made.
  Spares(Spool& spool, Committer& committer);

  // A new message's files: a spare when one is ready, else made now (its names then made
  // durable by its commit). Replacements are asked for at once.
  Result<NewMessage> take();
  size_t ready() const { return ready_.size(); }

 private:
  void top_up();

  Spool& spool_;
  Committer& committer_;
  std::deque<NewMessage> ready_;  // names durable
  bool making_ = false;           // a task making more is under way
};

}  // namespace postern::queue
