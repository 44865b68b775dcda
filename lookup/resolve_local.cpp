// ResolveLocal: every address's route for mda (before it delivers) and for the parent (before
// it starts a delivery helper). A system user's ~/.forward is read through the parent, which
// alone may open a home directory: the request waits for its answers, never the event loop.
#include <unistd.h>

#include <algorithm>
#include <set>
#include <utility>

#include "common/util/io.hpp"
#include "lookup/lookup_process.hpp"
#include "mda/api.hpp"
#include "smtpd/api.hpp"

namespace postern::lookup {
namespace {

// Route answers are cut into frames of at most this many payload bytes.
constexpr size_t kRouteFrameBudget = 48 * 1024;
// Requests held for .forward files at once; beyond, a route that needs one is temporary.
constexpr size_t kMaxHeldResolves = 256;
// ForwardOpen requests in flight at once.
constexpr size_t kMaxForwardsAsked = 256;
// The parent opens a file in microseconds: no answer by then is an I/O problem (a hung NFS
// home), and the delivery defers.
constexpr std::chrono::seconds kForwardTimeout{10};
// A request still waiting after this is answered with what is known (temporary for the rest),
// so that files expiring from the cache while others are read cannot hold it forever.
constexpr std::chrono::seconds kMaxHold{2 * kForwardTimeout};

}  // namespace

void LookupProcess::resolve_local(msg::Incoming& in, const msg::ResolveLocal& m) {
  resolve_or_hold(HeldResolve{.from = in.from,
                              .request_id = in.request_id,
                              .addresses = m.addresses,
                              .since = Clock::now()});
}

void LookupProcess::resolve_or_hold(HeldResolve request) {
  std::set<std::string> unread;
  const bool may_hold =
      held_resolves_.size() < kMaxHeldResolves && Clock::now() - request.since < kMaxHold;
  std::vector<msg::LocalRoute> routes;
  routes.reserve(request.addresses.size());
  for (const std::string& address : request.addresses)
    routes.push_back(router_.resolve(address, may_hold ? &unread : nullptr));
  if (unread.empty()) return send_routes(request, routes);
  for (const std::string& user : unread) ask_forward(user);
  held_resolves_.push_back(std::move(request));
}

void LookupProcess::send_routes(const HeldResolve& request,
                                const std::vector<msg::LocalRoute>& routes) {
  ipc::Channel* asker =
      request.from == Role::parent ? &runtime_.parent() : runtime_.peer(request.from);
  if (asker == nullptr) return;
  msg::LocalRoutes frame;
  size_t bytes = 0;
  for (msg::LocalRoute route : routes) {
    size_t size = 16 + route.error.size();
    for (const auto& d : route.destinations)
      size += 16 + d.target.size() + d.user.size() + d.mailbox.size();
    if (size > kRouteFrameBudget) {
      route = {.status = msg::RouteStatus::failed,
               .error = "expands to more destinations than fit one answer",
               .destinations = {}};
      size = 64;
    }
    if (bytes + size > kRouteFrameBudget) {
      frame.last = false;
      if (!msg::send(*asker, frame, request.request_id)) return;
      frame.routes.clear();
      bytes = 0;
    }
    frame.routes.push_back(std::move(route));
    bytes += size;
  }
  frame.last = true;
  if (!msg::send(*asker, frame, request.request_id))
    log::warn("cannot answer %s", std::string(role_name(request.from)).c_str());
}

// Once per user while a question is out: every held request waits for the same answer.
void LookupProcess::ask_forward(const std::string& user) {
  if (std::any_of(forwards_asked_.begin(), forwards_asked_.end(),
                  [&](const auto& kv) { return kv.second.first == user; }))
    return;
  if (forwards_asked_.size() >= kMaxForwardsAsked) {
    router_.forward_files().store_failure(user, "too many questions to the parent at once");
    return;
  }
  const uint32_t id = next_forward_request_++;
  if (!msg::send(runtime_.parent(), msg::ForwardOpen{.user = user}, id)) {
    router_.forward_files().store_failure(user, "cannot ask the parent");
    return;
  }
  if (forwards_asked_.empty()) forward_timer_.arm(kForwardTimeout);
  forwards_asked_.emplace(id, std::make_pair(user, Clock::now()));
}

void LookupProcess::forward_answered(msg::Incoming& in, const msg::ForwardFile& m) {
  const auto asked = forwards_asked_.find(in.request_id);
  if (asked == forwards_asked_.end() || asked->second.first != m.user) {
    log::warn("an answer about the ~/.forward of %s that was not asked for", m.user.c_str());
    return;
  }
  forwards_asked_.erase(asked);
  ForwardFiles& files = router_.forward_files();
  if (m.status == msg::ForwardStatus::found) {
    Result<std::string> text = in.fd.valid() ? read_all(in.fd.get(), kMaxForwardBytes)
                                             : Result<std::string>(make_error("no descriptor"));
    if (text.ok())
      files.store(m.user, m.status, "", text.value());
    else
      files.store_failure(m.user, text.error().message);
  } else {
    files.store(m.user, m.status, m.reason, "");
  }
  retry_held_resolves();
}

void LookupProcess::forwards_timed_out() {
  const Clock::time_point now = Clock::now();
  std::erase_if(forwards_asked_, [&](const auto& kv) {
    if (now - kv.second.second < kForwardTimeout) return false;
    router_.forward_files().store_failure(kv.second.first, "the parent did not answer in time");
    return true;
  });
  if (!forwards_asked_.empty()) forward_timer_.arm(kForwardTimeout);
  retry_held_resolves();
}

// Each held request is tried again; one that still needs a file not known yet is held again.
void LookupProcess::retry_held_resolves() {
  std::vector<HeldResolve> held = std::move(held_resolves_);
  held_resolves_.clear();
  for (HeldResolve& request : held) resolve_or_hold(std::move(request));
}

}  // namespace postern::lookup
