// smtpd-mta, outbound relay: the SMTP client side. Runs as _smtpd chrooted in an empty
// directory; learns routes from lookup and message bytes from the queue. So far it asks
// lookup for routes (MxQuery), which smtpctl show mx makes visible.
#include <cstdio>
#include <map>
#include <string>

#include "common/ipc/child.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mta/api.hpp"

namespace postern::mta {
namespace {

const char* status_text(msg::MxStatus status) {
  switch (status) {
    case msg::MxStatus::ok:
      return "ok";
    case msg::MxStatus::no_domain:
      return "the domain does not exist (permanent)";
    case msg::MxStatus::null_mx:
      return "the domain accepts no mail: null MX (permanent)";
    case msg::MxStatus::no_address:
      return "no host of the domain has an address (permanent)";
    case msg::MxStatus::temporary:
      return "temporary DNS failure";
  }
  return "?";
}

// One line per host, in the order mta would try them: preference, name, addresses.
std::string describe(const std::string& domain, const msg::MxAnswer& a) {
  std::string text = domain + ": " + status_text(a.status);
  if (a.implicit) text += " (no MX records: the domain's own addresses)";
  if (!a.error.empty()) text += "; " + a.error;
  text += "\n";
  for (const auto& h : a.hosts) {
    char head[32];
    std::snprintf(head, sizeof head, "%5u  ", static_cast<unsigned>(h.preference));
    text += head + h.name;
    for (const auto& address : h.addresses) text += " " + address;
    text += "\n";
  }
  return text;
}

class MtaProcess {
 public:
  explicit MtaProcess(ChildRuntime& runtime) : runtime_(runtime) {
    auto& d = runtime_.dispatcher();
    d.on<Settings>([this](msg::Incoming&, Settings&& m) { settings_ = std::move(m); });
    d.on<msg::CtlShowMx>([this](msg::Incoming& in, msg::CtlShowMx&& m) { show_mx(in, m); });
    d.on<msg::MxAnswer>([this](msg::Incoming& in, msg::MxAnswer&& m) { on_answer(in, m); });
    d.on<msg::DeliverRemote>(
        [this](msg::Incoming& in, msg::DeliverRemote&& m) { defer_all(in.request_id, m); });
    runtime_.on_peer_lost([this](Role peer) {
      if (peer != Role::lookup) return;
      for (const auto& [request, asked] : asking_)
        answer_control(asked.control_request, false, asked.domain + ": lookup went away");
      asking_.clear();
    });
  }

 private:
  struct Asked {
    std::string domain;
    uint32_t control_request = 0;
  };

  void show_mx(msg::Incoming& in, const msg::CtlShowMx& m) {
    ipc::Channel* lookup = runtime_.peer(Role::lookup);
    const uint32_t request = next_request_++;
    if (lookup == nullptr || !msg::send(*lookup, msg::MxQuery{.domain = m.domain}, request)) {
      answer_control(in.request_id, false, "lookup is not answering");
      return;
    }
    asking_[request] = {m.domain, in.request_id};
  }

  void on_answer(msg::Incoming& in, const msg::MxAnswer& m) {
    auto it = asking_.find(in.request_id);
    if (it == asking_.end()) return;
    const Asked asked = it->second;
    asking_.erase(it);
    answer_control(asked.control_request, m.status == msg::MxStatus::ok, describe(asked.domain, m));
  }

  // No SMTP client yet: every remote recipient is deferred, so the queue keeps the message
  // and retries it with its back-off (its descriptor is closed with the frame).
  void defer_all(uint32_t request, const msg::DeliverRemote& job) {
    msg::DeliveryReport report{.id = job.envelope.id, .results = {}, .last = true};
    for (const msg::RemoteRecipient& r : job.recipients)
      report.results.push_back({.index = r.index,
                                .outcome = msg::DeliveryOutcome::temporary_failure,
                                .dsn = "4.3.2",
                                .detail = "remote delivery is not available yet"});
    ipc::Channel* queue = runtime_.peer(Role::queue);
    if (queue == nullptr || !msg::send(*queue, report, request)) log::warn("cannot answer queue");
  }

  void answer_control(uint32_t request, bool ok, const std::string& text) {
    ipc::Channel* control = runtime_.peer(Role::control);
    if (control == nullptr ||
        !msg::send(*control, msg::CtlResult{.ok = ok, .text = text.substr(0, msg::kMaxCtlText)},
                   request))
      log::warn("cannot answer control");
  }

  ChildRuntime& runtime_;
  Settings settings_;
  uint32_t next_request_ = 1;
  std::map<uint32_t, Asked> asking_;
};

}  // namespace
}  // namespace postern::mta

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::mta, argc, argv);
  postern::mta::MtaProcess mta(runtime);
  return runtime.run();
}
