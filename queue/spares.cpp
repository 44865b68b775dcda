// Message files made ahead of need; see spares.hpp.
#include "queue/spares.hpp"

#include "common/log.hpp"

namespace postern::queue {

// At most this many pairs are made in one turn of the event loop (each costs it a little).
constexpr size_t kMadePerTurn = 4;

Spares::Spares(event_base* base, Spool& spool, Committer& committer)
    : spool_(spool), committer_(committer), top_up_timer_(base, [this] { top_up(); }) {
  while (unsynced_.size() < kSpares) {
    Result<NewMessage> made = spool_.create();
    if (!made.ok()) break;
    unsynced_.push_back(std::move(made).value());
  }
  top_up();
}

Result<NewMessage> Spares::take() {
  if (!top_up_timer_.pending()) top_up_timer_.arm(std::chrono::milliseconds(0));
  if (ready_.empty()) return spool_.create();
  NewMessage spare = std::move(ready_.front());
  ready_.pop_front();
  return spare;
}

void Spares::top_up() {
  size_t made = 0;
  while (ready_.size() + unsynced_.size() + syncing_ < kSpares && made < kMadePerTurn) {
    Result<NewMessage> next = spool_.create();
    if (!next.ok()) {
      // A full disk, say: take() makes files itself meanwhile and reports what fails.
      log::warn("cannot make spare message files: %s", next.error().message.c_str());
      break;
    }
    unsynced_.push_back(std::move(next).value());
    ++made;
  }
  if (made == kMadePerTurn) top_up_timer_.arm(std::chrono::milliseconds(0));
  if (unsynced_.empty() || syncing_ != 0) return;
  syncing_ = unsynced_.size();
  auto batch = std::make_shared<std::vector<NewMessage>>(std::move(unsynced_));
  unsynced_.clear();
  committer_.sync_names([this, batch](const Status& st) {
    syncing_ = 0;
    if (!st.ok()) {
      // Kept without the promise: their commits fsync the directory themselves.
      log::warn("cannot make spare message files durable: %s", st.error().message.c_str());
    }
    for (NewMessage& m : *batch) {
      m.names_durable = st.ok();
      ready_.push_back(std::move(m));
    }
    top_up();
  });
}

}  // namespace postern::queue
