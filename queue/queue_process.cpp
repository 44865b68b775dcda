// The queue process's message handling (queue_process.hpp): a message from open to commit,
// the relay check, spool recovery at start, and the smtpctl views of the queue.
#include "queue/queue_process.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>

#include "common/util/ascii.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "queue/submission.hpp"
#include "queue/views.hpp"
#include "smtp/api.hpp"
#include "smtpd/api.hpp"

namespace postern::queue {
namespace {

// Messages smtp may have open at once; a peer that opens more is misbehaving.
constexpr size_t kMaxOpenMessages = 10000;

}  // namespace

QueueProcess::QueueProcess(ChildRuntime& runtime) : runtime_(runtime) {
  auto& d = runtime_.dispatcher();
  d.on<Settings>([this](msg::Incoming&, Settings&& m) {
    spool_dir_ = m.spool_dir;
    config_ = std::move(m);
    if (scheduler_) scheduler_->configure(config_);
  });
  d.on<msg::DeliveryReport>([this](msg::Incoming& in, msg::DeliveryReport&& m) {
    if (scheduler_) scheduler_->on_report(m, in.from, in.request_id);
  });
  d.on<msg::CtlSchedule>([this](msg::Incoming& in, msg::CtlSchedule&& m) {
    answer_control(in.request_id, scheduler_->schedule(m.id));
  });
  d.on<msg::CtlRemove>([this](msg::Incoming& in, msg::CtlRemove&& m) {
    answer_control(in.request_id, scheduler_->remove(m.id));
  });
  d.on<msg::CtlPause>([this](msg::Incoming& in, msg::CtlPause&& m) {
    if (m.target != Role::queue)
      answer_control(in.request_id, scheduler_->pause_deliveries(m.target, m.pause));
    else if (m.envelope.empty() == m.domain.empty())
      answer_control(in.request_id, make_error("name one envelope or one domain to hold"));
    else if (!m.envelope.empty())
      answer_control(in.request_id, scheduler_->hold_message(m.envelope, m.pause));
    else
      answer_control(in.request_id, scheduler_->hold_domain(m.domain, m.pause));
  });
  d.on<msg::MessageOpen>([this](msg::Incoming& in, msg::MessageOpen&&) { open(in); });
  d.on<msg::MessageRecipients>(
      [this](msg::Incoming&, msg::MessageRecipients&& m) { add_recipients(m); });
  d.on<msg::MessageCommit>(
      [this](msg::Incoming& in, msg::MessageCommit&& m) { commit(in.request_id, std::move(m)); });
  d.on<msg::MessageAbort>([this](msg::Incoming&, msg::MessageAbort&& m) { abort(m.id); });
  d.on<msg::CtlShowQueue>([this](msg::Incoming& in, msg::CtlShowQueue&& m) {
    const Views views(*scheduler_, *spool_);
    const int64_t now = time(nullptr);
    send_page(in.request_id,
              m.view == msg::QueueView::shape ? views.shape(m, now) : views.list(m, now));
  });
  d.on<msg::CtlShowMessage>([this](msg::Incoming& in, msg::CtlShowMessage&& m) {
    const Views views(*scheduler_, *spool_);
    send_page(in.request_id,
              m.part == msg::MessagePart::data ? views.data(m) : views.envelope(m, time(nullptr)));
  });
  runtime_.on_started([this] { start(); });
  d.on<msg::OfflineMessage>(
      [this](msg::Incoming& in, msg::OfflineMessage&& m) { pick_up(std::move(in.fd), m); });
  d.on<msg::RelayVerdict>(
      [this](msg::Incoming& in, msg::RelayVerdict&& m) { relay_checked(in.request_id, m); });
  runtime_.on_peer_lost([this](Role peer) {
    if (peer == Role::smtp) {
      forget_open_messages();
      drop_relay_checks(false);
    }
    if (peer == Role::lookup) drop_relay_checks(true);
    if (scheduler_) scheduler_->peer_lost(peer);
  });
  runtime_.on_peer_ready([this](Role peer) {
    if (scheduler_) scheduler_->peer_ready(peer);
  });
}

QueueProcess::~QueueProcess() {
  committer_.reset();
}

void QueueProcess::start() {
  spool_ = std::make_unique<Spool>(spool_dir_);
  if (Status st = spool_->open(); !st.ok()) log::fatal("%s", st.error().message.c_str());
  Recovery r = spool_->recover();
  log::info("spool %s: %zu messages queued, %zu unfinished files removed, %zu corrupt",
            spool_dir_.c_str(), r.committed.size(), r.leftovers, r.corrupt);
  committer_ = std::make_unique<Committer>(runtime_.base(), *spool_);
  spares_ = std::make_unique<Spares>(*spool_, *committer_);
  scheduler_ = std::make_unique<Scheduler>(runtime_, *spool_, *spares_, *committer_);
  scheduler_->configure(config_);
  for (Envelope& e : r.envelopes) scheduler_->add(std::move(e));
  update_counters();
}

void QueueProcess::answer_control(uint32_t request_id, const Result<std::string>& outcome) {
  ipc::Channel* control = runtime_.peer(Role::control);
  const msg::CtlResult result{.ok = outcome.ok(),
                              .text = outcome.ok() ? outcome.value() : outcome.error().message};
  if (control == nullptr || !msg::send(*control, result, request_id))
    log::warn("cannot answer control");
}

void QueueProcess::reply(uint32_t request_id, const msg::MessageResult& result) {
  ipc::Channel* smtp = runtime_.peer(Role::smtp);
  if (smtp == nullptr || !msg::send(*smtp, result, request_id))
    log::warn("cannot answer smtp about message %s", result.id.c_str());
}

void QueueProcess::open(msg::Incoming& in) {
  ipc::Channel* smtp = runtime_.peer(Role::smtp);
  if (smtp == nullptr) return;
  if (open_.size() >= kMaxOpenMessages) {
    reply(in.request_id, {.id = "",
                          .outcome = msg::MessageOutcome::temporary_failure,
                          .reason = "too many messages in progress"});
    return;
  }
  Result<NewMessage> created = spares_->take();
  if (!created.ok()) {
    log::error("cannot create a message: %s", created.error().message.c_str());
    reply(in.request_id, {.id = "",
                          .outcome = msg::MessageOutcome::temporary_failure,
                          .reason = "cannot create the message file"});
    return;
  }
  NewMessage& m = created.value();
  if (!msg::send(*smtp, msg::MessageOpened{.id = m.id}, in.request_id, std::move(m.theirs))) {
    spool_->discard(m.id);
    return;
  }
  const std::string id = m.id;  // (the right side is evaluated first and moves m)
  open_[id] = OpenMessage{std::move(m), {}};
  update_counters();
}

void QueueProcess::add_recipients(msg::MessageRecipients& m) {
  auto it = open_.find(m.id);
  if (it == open_.end()) return;  // aborted meanwhile
  for (auto& rcpt : m.recipients) it->second.recipients.push_back(std::move(rcpt));
}

void QueueProcess::commit(uint32_t request_id, msg::MessageCommit&& m) {
  const std::string id = m.envelope.id;
  auto it = open_.find(id);
  if (it == open_.end()) {
    reply(request_id, {.id = id,
                       .outcome = msg::MessageOutcome::permanent_failure,
                       .reason = "no such message in progress"});
    return;
  }
  OpenMessage message = std::move(it->second);
  open_.erase(it);
  if (message.recipients.size() != m.recipient_count) {
    log::warn("message %s: %zu recipients arrived, %u announced; refused", id.c_str(),
              message.recipients.size(), m.recipient_count);
    spool_->discard(id);
    reply(request_id, {.id = id,
                       .outcome = msg::MessageOutcome::temporary_failure,
                       .reason = "recipient list incomplete"});
    update_counters();
    return;
  }
  m.envelope.recipients = std::move(message.recipients);
  // The relay check (docs/privsep.md): local recipients are known from the configuration
  // the parent sent, so local-only mail goes straight on; every other recipient's domain
  // needs lookup to vouch for the session first, whatever smtp claimed.
  std::set<std::string> remote;
  for (const Recipient& r : m.envelope.recipients)
    if (!scheduler_->is_local(r.address)) remote.insert(r.address.substr(r.address.rfind('@') + 1));
  if (remote.empty()) {
    submit(request_id, std::move(m.envelope), std::move(message.files));
    return;
  }
  RelayInFlight flight{request_id, m.session, std::move(m.envelope), std::move(message.files),
                       std::vector<std::string>(remote.begin(), remote.end())};
  if (std::any_of(flight.domains.begin(), flight.domains.end(),
                  [](const std::string& d) { return d.size() > msg::kMaxDomainLength; })) {
    refuse_relay(std::move(flight),
                 {.allowed = false, .temporary = false, .reason = "a recipient domain too long"});
    return;
  }
  ask_relay(std::move(flight));
}

void QueueProcess::ask_relay(RelayInFlight flight) {
  const Envelope& e = flight.envelope;
  msg::RelayCheck check{.session = flight.session,
                        .client_address = e.client_address,
                        .listener = e.listener,
                        .auth_user = e.auth_user,
                        .sender = e.sender,
                        .domains = {}};
  size_t bytes = 0;
  while (!flight.domains.empty() && check.domains.size() < msg::kMaxRelayDomains &&
         bytes + flight.domains.back().size() <= msg::kRelayDomainBytes) {
    bytes += flight.domains.back().size();
    check.domains.push_back(std::move(flight.domains.back()));
    flight.domains.pop_back();
  }
  ipc::Channel* lookup = runtime_.peer(Role::lookup);
  const uint32_t check_id = next_relay_check_++;
  if (lookup == nullptr || !msg::send(*lookup, check, check_id)) {
    refuse_relay(std::move(flight),
                 {.allowed = false, .temporary = true, .reason = "relay check unavailable"});
    return;
  }
  relay_checks_[check_id] = std::move(flight);
  update_counters();
}

void QueueProcess::relay_checked(uint32_t check_id, const msg::RelayVerdict& verdict) {
  auto it = relay_checks_.find(check_id);
  if (it == relay_checks_.end()) return;
  RelayInFlight flight = std::move(it->second);
  relay_checks_.erase(it);
  if (!verdict.allowed) {
    refuse_relay(std::move(flight), verdict);
  } else if (!flight.domains.empty()) {
    ask_relay(std::move(flight));  // more domains than one question carries
  } else {
    submit(flight.smtp_request, std::move(flight.envelope), std::move(flight.files));
  }
}

void QueueProcess::refuse_relay(RelayInFlight flight, const msg::RelayVerdict& verdict) {
  const Envelope& e = flight.envelope;
  log::Line(e.id)
      .add("event", "reject")
      .session(flight.session)
      .add("client", "[" + e.client_address + "]")
      .add("auth", e.auth_user.empty() ? "no" : e.auth_user)
      .add("reason", "relay check: " + verdict.reason)
      .warn();
  spool_->discard(e.id);
  reply(flight.smtp_request, {.id = e.id,
                              .outcome = verdict.temporary ? msg::MessageOutcome::temporary_failure
                                                           : msg::MessageOutcome::relay_denied,
                              .reason = verdict.reason});
  update_counters();
}

void QueueProcess::drop_relay_checks(bool answer_smtp) {
  for (auto& [check_id, flight] : relay_checks_) {
    spool_->discard(flight.envelope.id);
    if (answer_smtp)
      reply(flight.smtp_request, {.id = flight.envelope.id,
                                  .outcome = msg::MessageOutcome::temporary_failure,
                                  .reason = "relay check unavailable"});
  }
  relay_checks_.clear();
  update_counters();
}

void QueueProcess::submit(uint32_t request_id, Envelope envelope, NewMessage files) {
  enqueue(std::move(envelope), std::move(files), [this, request_id](const Envelope& e, bool ok) {
    reply(
        request_id,
        ok ? msg::MessageResult{.id = e.id, .outcome = msg::MessageOutcome::committed, .reason = ""}
           : msg::MessageResult{.id = e.id,
                                .outcome = msg::MessageOutcome::temporary_failure,
                                .reason = "cannot write the message to disk"});
  });
}

void QueueProcess::enqueue(Envelope envelope, NewMessage files,
                           std::function<void(const Envelope&, bool)> done) {
  ++committing_;
  committer_->submit(std::move(envelope), std::move(files),
                     [this, done = std::move(done)](const Envelope& e, const Status& st) {
                       --committing_;
                       if (st.ok()) {
                         ++received_;
                         scheduler_->add(e);
                         log::Line(e.id)
                             .add("event", "queued")
                             .add("from", "<" + e.sender + ">")
                             .number("size", e.size)
                             .number("nrcpt", e.recipients.size())
                             .add("client", "[" + e.client_address + "]")
                             .info();
                       } else {
                         log::error("%s: commit failed: %s", e.id.c_str(),
                                    st.error().message.c_str());
                         spool_->discard(e.id);
                       }
                       done(e, st.ok());
                       update_counters();
                     });
  update_counters();
}

void QueueProcess::pick_up(UniqueFd file, const msg::OfflineMessage& m) {
  auto answer = [this, name = m.name](msg::OfflineOutcome outcome, const std::string& reason) {
    if (!msg::send(runtime_.parent(),
                   msg::OfflineResult{.name = name, .outcome = outcome, .reason = reason}))
      log::warn("cannot answer the parent about offline/%s", name.c_str());
  };
  if (!scheduler_) return answer(msg::OfflineOutcome::later, "the queue is starting");
  Result<std::string> bytes = read_all(file.get(), m.max_size + kMaxSubmissionHeader);
  if (!bytes.ok()) return answer(msg::OfflineOutcome::refused, bytes.error().message);
  Result<Submission> submission = parse_submission(bytes.value());
  if (!submission.ok()) return answer(msg::OfflineOutcome::refused, submission.error().message);
  Result<NewMessage> created = spares_->take();
  if (!created.ok()) return answer(msg::OfflineOutcome::later, created.error().message);
  NewMessage files = std::move(created.value());
  const time_t now = time(nullptr);
  Result<LocalMessage> made =
      make_local_message(submission.value(), {.uid = m.uid, .user = m.user, .trusted = m.trusted},
                         config_.hostname, files.id, now, m.max_size);
  if (!made.ok()) {
    spool_->discard(files.id);
    return answer(msg::OfflineOutcome::refused, made.error().message);
  }
  if (Status written = write_all(files.ours.get(), made->data); !written.ok()) {
    log::error("%s: writing a local submission: %s", files.id.c_str(),
               written.error().message.c_str());
    spool_->discard(files.id);
    return answer(msg::OfflineOutcome::later, written.error().message);
  }
  Envelope e = std::move(made->envelope);
  e.id = files.id;
  e.arrival = now;
  log::info("%s: local submission offline/%s by uid %u (%s)", e.id.c_str(), m.name.c_str(), m.uid,
            m.user.c_str());
  if (!made->sender_warning.empty())
    log::warn("%s: %s, not trusted to: recorded in the message", e.id.c_str(),
              made->sender_warning.c_str());
  enqueue(std::move(e), std::move(files), [answer](const Envelope& queued, bool ok) {
    if (ok)
      answer(msg::OfflineOutcome::queued, queued.id);
    else
      answer(msg::OfflineOutcome::later, "cannot write the message to disk");
  });
}

void QueueProcess::abort(const std::string& id) {
  if (open_.erase(id) == 0) return;
  spool_->discard(id);
  update_counters();
}

void QueueProcess::forget_open_messages() {
  for (const auto& [id, message] : open_) spool_->discard(id);
  if (!open_.empty()) log::info("smtp went away; %zu unfinished messages removed", open_.size());
  open_.clear();
  update_counters();
}

void QueueProcess::send_page(uint32_t request_id, const Page& page) {
  ipc::Channel* control = runtime_.peer(Role::control);
  bool sent = control != nullptr;
  for (const std::string& piece : page.pieces)
    sent = sent && msg::send(*control, msg::CtlText{.text = piece}, request_id);
  if (!sent || !msg::send(*control, page.result, request_id)) log::warn("cannot answer control");
}

void QueueProcess::update_counters() {
  auto& c = runtime_.counters();
  c["receiving"] = open_.size();
  c["relay_checks"] = relay_checks_.size();
  c["committing"] = committing_;
  c["received"] = received_;
  if (committer_) {
    c["commit_batches"] = committer_->batches();
    c["largest_batch"] = committer_->largest_batch();
  }
}

}  // namespace postern::queue
