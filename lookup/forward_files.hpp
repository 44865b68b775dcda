// System users' ~/.forward files as the parent last passed them (lookup cannot open a home
// directory: the parent opens the file as the user and hands over the descriptor). Each answer
// is kept for kLifetime, so one delivery's questions (mda's, then the parent's confirmation of
// a helper) read the same file; an unreadable one only for kFailedLifetime, so that the next
// delivery attempt asks again. Parsing only: expansion is LocalRouter's.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lookup/aliases.hpp"
#include "lookup/api.hpp"
#include "lookup/recent_keys.hpp"

namespace postern::lookup {

// The parent refuses a larger file; lookup reads no more than this either.
constexpr size_t kMaxForwardBytes = 64 * 1024;

struct ForwardState {
  // none: no usable .forward (none at all, or one refused or unparseable: mail goes to the
  // mailbox); failed: it could not be read (deliveries defer); list: its targets.
  enum class Kind : uint8_t { none, failed, list };
  Kind kind = Kind::none;
  std::string reason;  // failed: why
  std::vector<AliasTarget> targets;
};

class ForwardFiles {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kLifetime{30};
  static constexpr std::chrono::seconds kFailedLifetime{5};

  explicit ForwardFiles(size_t max_entries = 10000);
  // What is known of the user's file, or nullptr when it must be asked for.
  const ForwardState* find(const std::string& user, Clock::time_point now = Clock::now());
  // The parent's answer: text is the file's content when status is found. An unusable file is
  // logged (user and reason) and counts as none.
  void store(const std::string& user, msg::ForwardStatus status, const std::string& reason,
             const std::string& text, Clock::time_point now = Clock::now());
  // The parent did not answer in time, or the channel to it failed.
  void store_failure(const std::string& user, const std::string& reason,
                     Clock::time_point now = Clock::now());
  void clear() { cache_.clear(); }
  size_t size() const { return cache_.size(); }

 private:
  struct Cached {
    Clock::time_point fetched;
    ForwardState state;
  };
  void put(const std::string& user, ForwardState state, Clock::time_point now);

  RecentKeys<Cached> cache_;
};

// "~/.forward of USER ignored (REASON): mail goes to the mailbox", logged once per answer.
void log_forward_ignored(const std::string& user, const std::string& reason);

}  // namespace postern::lookup
