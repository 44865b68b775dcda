// Message files made ahead of need; see spares.hpp.
#include "queue/spares.hpp"

#include <optional>

#include "common/util/log.hpp"

namespace postern::queue {

Spares::Spares(Spool& spool, Committer& committer) : spool_(spool), committer_(committer) {
  top_up();
}

Result<NewMessage> Spares::take() {
  if (ready_.empty()) {
    top_up();
    return spool_.create();
  }
  NewMessage spare = std::move(ready_.front());
  ready_.pop_front();
  top_up();
  return spare;
}

void Spares::top_up() {
  if (making_ || ready_.size() >= kSpares) return;
  making_ = true;
  // The task runs on the committer's thread and may outlive this object: it holds only the
  // spool (which outlives the committer) and what it makes. The task batch's directory fsync
  // makes the names durable before done runs.
  struct Made {
    std::vector<NewMessage> files;
    std::optional<Error> error;
  };
  auto made = std::make_shared<Made>();
  const size_t wanted = kSpares - ready_.size();
  committer_.run(
      "spares",
      [&spool = spool_, made, wanted] {
        while (made->files.size() < wanted) {
          Result<NewMessage> next = spool.create();
          if (!next.ok()) {
            made->error = next.error();
            break;
          }
          made->files.push_back(std::move(next).value());
        }
        return ok_status();  // what was made still needs the batch's fsync
      },
      [this, made](const Status& synced) {
        making_ = false;
        // A full disk, say: take() makes files itself meanwhile and reports what fails.
        if (made->error)
          log::warn("cannot make spare message files: %s", made->error->message.c_str());
        if (!synced.ok())
          log::warn("cannot make spare message files durable: %s", synced.error().message.c_str());
        for (NewMessage& m : made->files) {
          // Kept without the promise when the fsync failed: their commits fsync it themselves.
          m.names_durable = synced.ok();
          ready_.push_back(std::move(m));
        }
        if (!made->error) top_up();
      });
}

}  // namespace postern::queue
