// What mda delivered and reported lately, for a queue that restarts: the queue records a
// report in its spool a few milliseconds after it arrives, a queue killed in between has lost
// it, and the one that takes its place hands those messages out again. Their recipients are
// answered from here, delivered, instead of being delivered twice. Safe because a queue that
// recorded a recipient as delivered never hands it out again. Memory only: bounded, and gone
// with mda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "common/ipc/messages.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::mda {

class Reported {
 public:
  // Keeps the delivered recipients of at most max_messages messages and max_recipients
  // recipients, forgetting the messages reported first.
  Reported(size_t max_messages, size_t max_recipients)
      : max_messages_(max_messages), max_recipients_(max_recipients) {}

  // A job's report: its recipients and their outcomes, in the same order.
  void remember(const std::string& id, const std::vector<msg::LocalRecipient>& recipients,
                const std::vector<msg::DeliveryResult>& outcomes);
  // The outcome reported for this recipient (its index and address) of this message, if it
  // was delivered; nullptr otherwise.
  const msg::DeliveryResult* find(const std::string& id, const msg::LocalRecipient& r) const;

  size_t messages() const { return messages_.size(); }
  size_t recipients() const { return recipients_; }

 private:
  struct Entry {
    std::string address;
    msg::DeliveryResult outcome;
  };
  const size_t max_messages_;
  const size_t max_recipients_;
  std::map<std::string, std::map<uint32_t, Entry>> messages_;  // by id, then recipient index
  std::deque<std::string> order_;                              // ids, oldest first
  size_t recipients_ = 0;
};

}  // namespace postern::mda
