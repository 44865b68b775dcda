// Duplicate elimination after alias expansion, as Postfix's local(8) and OpenSMTPD do: within
// one job (a message's recipients handed over together), each final destination is delivered
// once, and every recipient whose routes lead there shares that delivery's outcome. Pure
// logic on lookup's routes; mda/main.cpp dispatches what it returns to the delivery methods.
//
// The job, one delivery attempt, is the unit, not the message: the spool records an outcome
// per recipient, not per destination, so a recipient tried again later (deferred for another
// of its destinations, or after a crash) is delivered in full again, and a message split over
// several jobs (over kLocalRecipientsPerJob recipients) may reach a destination once per job.
// Remembering destinations across attempts would mean skipping a recipient on the word of a
// delivery the spool never recorded.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "common/ipc/messages.hpp"
#include "mda/api.hpp"

namespace postern::mda {

// One delivery of a job: where it goes, and the recipients (indexes into the job's) it is for,
// in the order they named it.
struct DistinctDelivery {
  msg::Destination destination;
  std::vector<size_t> recipients;
};

// Whether two destinations are one delivery: the same method, target and system user (one
// Maildir, mbox file, command or forward address, written or run as the same account). For
// LMTP the mailbox too, since it is the address the server is given. The Delivered-To: of a
// shared delivery is its first recipient's.
bool same_delivery(const msg::Destination& a, const msg::Destination& b);

// The deliveries of a job whose recipients have these routes (one per recipient; a missing
// route or one that is not ok has none), each distinct destination once, in the order of its
// first appearance.
std::vector<DistinctDelivery> distinct_deliveries(
    const std::vector<std::optional<msg::LocalRoute>>& routes);

}  // namespace postern::mda
