// System users' ~/.forward files; see forward_files.hpp.
#include "lookup/forward_files.hpp"

#include <utility>

#include "common/util/log.hpp"

namespace postern::lookup {

ForwardFiles::ForwardFiles(size_t max_entries) : cache_(max_entries, kLifetime) {}

const ForwardState* ForwardFiles::find(const std::string& user, Clock::time_point now) {
  const Cached* cached = cache_.find(user, now);
  if (cached == nullptr) return nullptr;
  const auto lifetime =
      cached->state.kind == ForwardState::Kind::failed ? kFailedLifetime : kLifetime;
  if (now - cached->fetched >= lifetime) {
    cache_.erase(user);
    return nullptr;
  }
  return &cache_.use(user, now).state;
}

void ForwardFiles::put(const std::string& user, ForwardState state, Clock::time_point now) {
  Cached& slot = cache_.use(user, now);
  slot.fetched = now;
  slot.state = std::move(state);
}

void ForwardFiles::store(const std::string& user, msg::ForwardStatus status,
                         const std::string& reason, const std::string& text,
                         Clock::time_point now) {
  ForwardState state;
  switch (status) {
    case msg::ForwardStatus::none:
      break;
    case msg::ForwardStatus::refused:
      log_forward_ignored(user, reason);
      break;
    case msg::ForwardStatus::failed:
      state.kind = ForwardState::Kind::failed;
      state.reason = "cannot read the ~/.forward of " + user + ": " + reason;
      break;
    case msg::ForwardStatus::found: {
      auto list = parse_forward_list(text, "~" + user + "/.forward");
      if (!list.ok()) {
        log_forward_ignored(user, list.error().to_string());
      } else if (!list.value().empty()) {
        state.kind = ForwardState::Kind::list;
        state.targets = std::move(list).value();
      }
      break;
    }
  }
  put(user, std::move(state), now);
}

void ForwardFiles::store_failure(const std::string& user, const std::string& reason,
                                 Clock::time_point now) {
  put(user,
      ForwardState{.kind = ForwardState::Kind::failed,
                   .reason = "cannot read the ~/.forward of " + user + ": " + reason,
                   .targets = {}},
      now);
}

void log_forward_ignored(const std::string& user, const std::string& reason) {
  log::warn("~/.forward of %s ignored (%s): mail goes to the mailbox", user.c_str(),
            reason.c_str());
}

}  // namespace postern::lookup
