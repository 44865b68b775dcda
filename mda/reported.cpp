// Deliveries reported lately; see reported.hpp.
#include "mda/reported.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::mda {

void Reported::remember(const std::string& id, const std::vector<msg::LocalRecipient>& recipients,
                        const std::vector<msg::DeliveryResult>& outcomes) {
  std::map<uint32_t, Entry> delivered;
  for (size_t i = 0; i < outcomes.size() && i < recipients.size(); ++i)
    if (outcomes[i].outcome == msg::DeliveryOutcome::delivered)
      delivered[recipients[i].index] = {recipients[i].address, outcomes[i]};
  if (delivered.empty()) return;
  auto [it, fresh] = messages_.try_emplace(id);
  if (fresh) order_.push_back(id);
  const size_t before = it->second.size();
  it->second.merge(delivered);  // (a recipient reported again keeps its first entry)
  recipients_ += it->second.size() - before;
  while (!order_.empty() && (order_.size() > max_messages_ || recipients_ > max_recipients_)) {
    auto oldest = messages_.find(order_.front());
    recipients_ -= oldest->second.size();
    messages_.erase(oldest);
    order_.pop_front();
  }
}

const msg::DeliveryResult* Reported::find(const std::string& id,
                                          const msg::LocalRecipient& r) const {
  auto message = messages_.find(id);
  if (message == messages_.end()) return nullptr;
  auto entry = message->second.find(r.index);
  if (entry == message->second.end() || entry->second.address != r.address) return nullptr;
  return &entry->second.outcome;
}

}  // namespace postern::mda
