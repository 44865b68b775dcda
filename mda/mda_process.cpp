// The mda process's deliveries (mda_process.hpp): routes from lookup, Maildirs staged and
// published on worker threads, mbox and LMTP on a thread of their own, helpers through the
// parent, and the report to the queue.
#include "mda/mda_process.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "mda/lmtp.hpp"
#include "mda/mbox.hpp"
#include "queue/api.hpp"
#include "smtpd/api.hpp"

namespace postern::mda {
namespace {

// Maildir files written before the publisher gets them (MaildirBatch).
constexpr size_t kStageChunk = 500;
// A loop turn's Maildir files up to this many are written and published on the loop itself:
// handing them to the threads costs a single delivery about 0.25 ms in wake-ups (measured
// '.' to new/: p50 1.53-1.58 ms inline, 1.54-1.91 ms through the threads).
constexpr size_t kInlineMaildirs = 4;
// A job's report goes in frames of at most about this many payload bytes.
constexpr size_t kReportFrameBudget = 48 * 1024;
// How long a job whose routes could not be asked (lookup restarting) waits for lookup to come
// back before its recipients are deferred. The parent restarts a crashed child within a
// fraction of a second; a child that keeps crashing is held back longer, and then the queue's
// retry schedule takes over.
constexpr std::chrono::seconds kLookupWait{30};

// Folds one destination's outcome into its recipient's: a temporary failure anywhere means
// the recipient is tried again; otherwise a permanent one bounces it.
void merge(msg::DeliveryResult& into, msg::DeliveryOutcome outcome, const std::string& dsn,
           const std::string& detail) {
  auto rank = [](msg::DeliveryOutcome o) {
    return o == msg::DeliveryOutcome::temporary_failure   ? 2
           : o == msg::DeliveryOutcome::permanent_failure ? 1
                                                          : 0;
  };
  if (rank(outcome) < rank(into.outcome)) return;
  if (rank(outcome) == rank(into.outcome) && !into.detail.empty()) return;
  into.outcome = outcome;
  into.dsn = dsn;
  into.detail = detail;
}

// What a delivery helper gets of a message: its size bytes copied out of the spool file
// (whose commit record lists every recipient and the client's address) into a memfd sealed
// against any change, which the parent checks before it hands it on.
Result<UniqueFd> sealed_copy(int spool_fd, uint64_t size) {
  UniqueFd copy(memfd_create("postern-message", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!copy) return errno_error("memfd_create");
  off_t offset = 0;  // sendfile leaves the spool file's own offset alone
  while (static_cast<uint64_t>(offset) < size) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size - offset, 1 << 30));
    const ssize_t n = sendfile(copy.get(), spool_fd, &offset, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("sendfile");
    if (n == 0) return make_error("the message file is shorter than its size");
  }
  if (fcntl(copy.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
    return errno_error("sealing the copy");
  return copy;
}

}  // namespace

MdaProcess::MdaProcess(ChildRuntime& runtime)
    : runtime_(runtime),
      lmtp_(std::make_unique<LmtpDeliveries>(runtime_.base(),
                                             mail::ClientTimeouts::all(kLmtpTimeout))) {
  auto& d = runtime_.dispatcher();
  d.on<Settings>([this](msg::Incoming&, Settings&& m) {
    settings_ = std::move(m);
    lmtp_->set_hostname(settings_.hostname);
  });
  d.on<msg::DeliverLocal>([this](msg::Incoming& in, msg::DeliverLocal&& m) {
    // Stopping: the queue hands the message out again after the restart.
    if (!runtime_.stopping()) accept(in, m);
  });
  d.on<msg::LocalRoutes>([this](msg::Incoming& in, msg::LocalRoutes&& m) { on_routes(in, m); });
  d.on<msg::HelperResult>([this](msg::Incoming& in, msg::HelperResult&& m) {
    helper_answered(in.request_id, m.outcome, m.dsn, m.detail);
  });
  d.on<msg::HelperRefused>([this](msg::Incoming& in, msg::HelperRefused&& m) {
    log::Line().add("event", "helper_refused").add("user", m.user).add("reason", m.error).warn();
    helper_answered(in.request_id, msg::DeliveryOutcome::temporary_failure, "4.3.0",
                    "cannot deliver as " + m.user + ": " + m.error);
  });
  runtime_.on_peer_lost([this](Role peer) {
    if (peer == Role::lookup) lookup_lost();
    if (peer == Role::queue) queue_lost();
  });
  runtime_.on_peer_ready([this](Role peer) {
    if (peer == Role::lookup) lookup_back();
  });
  lookup_wait_timer_ = std::make_unique<Timer>(runtime_.base(), [this] { stop_awaiting_lookup(); });
  // Told to stop, mda first finishes and reports the deliveries under way (jobs still
  // waiting for their routes have delivered nothing and are simply handed out again).
  runtime_.busy_while([this] {
    return std::any_of(jobs_.begin(), jobs_.end(),
                       [](const auto& job) { return job.second->pending > 0; });
  });
  // Named as the queue's and mta's counters (smtpctl(8)): the queue's delivered, deferred and
  // bounced are mda's and mta's added up.
  runtime_.counters()["delivered"] = 0;
  runtime_.counters()["deferred"] = 0;
  runtime_.counters()["bounced"] = 0;
  publish_timer_ = std::make_unique<Timer>(runtime_.base(), [this] { publish(); });
  publisher_ = std::make_unique<MaildirWorker>(runtime_.base(), publish_batch,
                                               [this](MaildirBatch& done) { on_published(done); });
  // What it stages goes on to the publisher; nothing comes back from it to the loop.
  stager_ = std::make_unique<MaildirWorker>(
      runtime_.base(),
      [&publisher = *publisher_](MaildirWorker::Batch& batch) { stage(batch, publisher); },
      [](MaildirBatch&) {});
  outside_ = std::make_unique<BatchWorker<OutsideDelivery>>(
      runtime_.base(),
      [](BatchWorker<OutsideDelivery>::Batch& batch) {
        for (auto& delivery : batch) delivery->answers = delivery->run();
      },
      [this](OutsideDelivery& done) { on_outside_answers(done); });
}

void MdaProcess::accept(msg::Incoming& in, msg::DeliverLocal& m) {
  auto job = std::make_unique<Job>();
  job->id = next_job_++;
  job->request_id = in.request_id;
  job->fd = std::move(in.fd);
  job->outcomes.resize(m.recipients.size());
  for (size_t i = 0; i < m.recipients.size(); ++i)
    job->outcomes[i] = {.index = m.recipients[i].index,
                        .outcome = msg::DeliveryOutcome::delivered,
                        .dsn = "2.0.0",
                        .detail = "",
                        .forward = {}};
  job->reported.resize(m.recipients.size());
  size_t reported = 0;
  for (size_t i = 0; i < m.recipients.size(); ++i) {
    const msg::DeliveryResult* before = reported_.find(m.id, m.recipients[i]);
    if (before == nullptr) continue;
    job->outcomes[i] = *before;
    job->reported[i] = true;
    ++reported;
  }
  if (reported != 0)
    log::Line(m.id).add("event", "reported_again").number("recipients", reported).info();
  job->message = std::move(m);
  Job& j = *job;
  jobs_[j.id] = std::move(job);
  if (reported == j.message.recipients.size()) {
    deliver(j);  // nothing to ask lookup
    return;
  }
  ask_routes(j);
}

void MdaProcess::ask_routes(Job& j) {
  j.routes.assign(j.message.recipients.size(), std::nullopt);
  j.routes_awaited = 0;
  ipc::Channel* lookup = runtime_.peer(Role::lookup);
  for (size_t first = 0; first < j.message.recipients.size(); first += msg::kResolveBatch) {
    msg::ResolveLocal ask;
    const size_t end = std::min(first + msg::kResolveBatch, j.message.recipients.size());
    for (size_t i = first; i < end; ++i) ask.addresses.push_back(j.message.recipients[i].address);
    const uint32_t request = next_request_++;
    if (lookup == nullptr || !msg::send(*lookup, ask, request)) {
      forget_questions(j.id);
      await_lookup(j);
      return;
    }
    resolving_[request] = {j.id, first};
    ++j.routes_awaited;
  }
  if (j.routes_awaited == 0) deliver(j);  // no recipients
}

void MdaProcess::forget_questions(uint64_t job) {
  std::erase_if(resolving_, [job](const auto& entry) { return entry.second.first == job; });
}

void MdaProcess::await_lookup(Job& j) {
  j.routes_awaited = 0;
  j.awaiting_lookup = true;
  if (!lookup_wait_timer_->pending()) lookup_wait_timer_->arm(kLookupWait);
}

void MdaProcess::on_routes(msg::Incoming& in, msg::LocalRoutes& m) {
  auto it = resolving_.find(in.request_id);
  if (it == resolving_.end()) return;
  auto& [job_id, next] = it->second;
  auto job = jobs_.find(job_id);
  if (job == jobs_.end()) {
    resolving_.erase(it);
    return;
  }
  Job& j = *job->second;
  for (auto& route : m.routes) {
    if (next >= j.routes.size()) break;
    j.routes[next++] = std::move(route);
  }
  if (!m.last) return;
  resolving_.erase(it);
  if (--j.routes_awaited == 0) deliver(j);
}

void MdaProcess::lookup_lost() {
  std::vector<uint64_t> waiting;
  for (const auto& [request, where] : resolving_) waiting.push_back(where.first);
  resolving_.clear();
  for (uint64_t id : waiting) {
    auto job = jobs_.find(id);
    if (job != jobs_.end() && !job->second->awaiting_lookup) await_lookup(*job->second);
  }
}

void MdaProcess::lookup_back() {
  lookup_wait_timer_->cancel();
  for (Job* j : jobs_awaiting_lookup()) {
    j->awaiting_lookup = false;
    ask_routes(*j);
  }
}

void MdaProcess::stop_awaiting_lookup() {
  for (Job* j : jobs_awaiting_lookup()) {
    j->awaiting_lookup = false;
    deliver(*j);
  }
}

std::vector<Job*> MdaProcess::jobs_awaiting_lookup() {
  std::vector<Job*> waiting;
  for (auto& [id, job] : jobs_)
    if (job->awaiting_lookup) waiting.push_back(job.get());
  return waiting;
}

void MdaProcess::queue_lost() {
  std::erase_if(jobs_, [this](const auto& entry) {
    const Job& j = *entry.second;
    if (j.routes_awaited == 0 && !j.awaiting_lookup) return false;
    forget_questions(j.id);
    return true;
  });
}

void MdaProcess::deliver(Job& j) {
  // Maildir files wait for the end of this loop turn (publish), where jobs that arrive
  // together share their flushes; an LMTP server gets one transaction per target; helpers
  // work on their own and answer later. Held pending while this runs, so no answer
  // finishes the job under it.
  ++j.pending;
  j.routes.resize(j.message.recipients.size());
  for (size_t i = 0; i < j.routes.size(); ++i) {
    msg::DeliveryResult& outcome = j.outcomes[i];
    if (j.reported[i]) {
      j.routes[i].reset();  // no deliveries (distinct_deliveries)
      continue;
    }
    if (!j.routes[i]) {
      merge(outcome, msg::DeliveryOutcome::temporary_failure, "4.3.0",
            "recipient lookup unavailable");
      continue;
    }
    const msg::LocalRoute& route = *j.routes[i];
    switch (route.status) {
      case msg::RouteStatus::ok:
        outcome.expanded = route.destinations.size() > 1;
        break;
      case msg::RouteStatus::unknown_user:
        merge(outcome, msg::DeliveryOutcome::permanent_failure, "5.1.1", route.error);
        break;
      case msg::RouteStatus::loop:
        merge(outcome, msg::DeliveryOutcome::permanent_failure, "5.4.6", route.error);
        break;
      case msg::RouteStatus::failed:
        merge(outcome, msg::DeliveryOutcome::permanent_failure, "5.3.0", route.error);
        break;
      case msg::RouteStatus::temporary:
        merge(outcome, msg::DeliveryOutcome::temporary_failure, "4.3.0", route.error);
        break;
    }
  }
  // Duplicates go before any method sees a destination: alice@ and postmaster@ (her alias)
  // are one Maildir file, whose outcome both recipients get (finish).
  j.deliveries = distinct_deliveries(j.routes);
  j.results.assign(j.deliveries.size(), {.index = 0,
                                         .outcome = msg::DeliveryOutcome::delivered,
                                         .dsn = "2.0.0",
                                         .detail = "",
                                         .forward = {}});
  std::map<std::string, std::vector<size_t>> by_lmtp;  // server -> its deliveries
  for (size_t k = 0; k < j.deliveries.size(); ++k) {
    const msg::Destination& d = j.deliveries[k].destination;
    if (d.method == msg::DeliveryMethod::forward)
      continue;  // handed to the queue with the report (finish)
    if (d.method == msg::DeliveryMethod::lmtp) {
      by_lmtp[d.target].push_back(k);
    } else if (d.method == msg::DeliveryMethod::command || !d.user.empty()) {
      to_helper(j, k, d);
    } else if (d.method == msg::DeliveryMethod::maildir) {
      publishing_.push_back({j.id, k,
                             MaildirDelivery{d.target, delivery_header(j.message.sender, d.mailbox),
                                             j.data(), unique_name()}});
      ++j.pending;
    } else {
      outside(j, [box = d.target, sender = j.message.sender,
                  header = delivery_header(j.message.sender, d.mailbox), data = j.data(), k] {
        const Status st = deliver_to_mbox(box, sender, header, data, time(nullptr));
        if (!st.ok())
          return std::vector<Answer>{
              {k, msg::DeliveryOutcome::temporary_failure, "4.3.0", st.error().message}};
        return std::vector<Answer>{
            {k, msg::DeliveryOutcome::delivered, "2.0.0", "delivered to mbox"}};
      });
    }
  }
  // One transaction per server, on the event loop (lmtp.hpp): no thread, and a stuck server
  // holds up only its own deliveries.
  for (auto& [target, deliveries] : by_lmtp) {
    LmtpRequest request{
        .target = target, .sender = j.message.sender, .mailboxes = {}, .message = j.data()};
    for (size_t k : deliveries) request.mailboxes.push_back(j.deliveries[k].destination.mailbox);
    ++j.pending;
    lmtp_->deliver(std::move(request), [this, job = j.id, deliveries = std::move(deliveries)](
                                           std::vector<LmtpAnswer> answers) {
      auto it = jobs_.find(job);
      if (it == jobs_.end()) return;
      Job& owner = *it->second;
      for (size_t i = 0; i < answers.size() && i < deliveries.size(); ++i)
        merge(owner.results[deliveries[i]], answers[i].outcome, answers[i].dsn, answers[i].detail);
      settle(owner);
    });
  }
  // Once per job, not per file: a fanout stages thousands.
  if (!publishing_.empty()) publish_timer_->arm(std::chrono::milliseconds(0));
  settle(j);
}

void MdaProcess::share_results(Job& j) {
  for (size_t k = 0; k < j.deliveries.size(); ++k) {
    const DistinctDelivery& delivery = j.deliveries[k];
    if (delivery.destination.method == msg::DeliveryMethod::forward) continue;
    const msg::DeliveryResult& result = j.results[k];
    for (size_t i : delivery.recipients)
      merge(j.outcomes[i], result.outcome, result.dsn, result.detail);
  }
  for (const DistinctDelivery& delivery : j.deliveries) {
    if (delivery.destination.method != msg::DeliveryMethod::forward) continue;
    for (size_t i : delivery.recipients) {
      if (j.outcomes[i].outcome != msg::DeliveryOutcome::delivered) continue;
      j.outcomes[i].forward.push_back(delivery.destination.target);
      break;
    }
  }
}

void MdaProcess::publish() {
  auto batch = std::make_unique<MaildirBatch>();
  batch->publications.swap(publishing_);
  if (batch->publications.size() > kInlineMaildirs) {
    stager_->post(std::move(batch));
    return;
  }
  std::vector<MaildirDelivery> deliveries;
  for (auto& p : batch->publications) deliveries.push_back(std::move(p.delivery));
  batch->results = deliver_to_maildirs(deliveries);
  on_published(*batch);
}

void MdaProcess::stage(MaildirWorker::Batch& batch, MaildirWorker& publisher) {
  std::vector<Publication> all;
  for (auto& b : batch)
    for (auto& p : b->publications) all.push_back(std::move(p));
  for (size_t first = 0; first < all.size(); first += kStageChunk) {
    const size_t end = std::min(all.size(), first + kStageChunk);
    auto chunk = std::make_unique<MaildirBatch>();
    std::vector<MaildirDelivery> deliveries;
    deliveries.reserve(end - first);
    for (size_t i = first; i < end; ++i) {
      deliveries.push_back(std::move(all[i].delivery));
      chunk->publications.push_back(std::move(all[i]));
    }
    chunk->staged = stage_maildirs(deliveries);
    publisher.post(std::move(chunk));
  }
}

void MdaProcess::publish_batch(MaildirWorker::Batch& batch) {
  std::vector<Result<StagedMaildir>> staged;
  for (auto& b : batch)
    for (auto& s : b->staged) staged.push_back(std::move(s));
  std::vector<Result<std::string>> results = publish_staged(staged);
  size_t k = 0;
  for (auto& b : batch) {
    b->staged.clear();
    for (size_t i = 0; i < b->publications.size(); ++i)
      b->results.push_back(std::move(results[k++]));
  }
}

void MdaProcess::on_published(MaildirBatch& done) {
  for (size_t k = 0; k < done.publications.size(); ++k) {
    auto job = jobs_.find(done.publications[k].job);
    if (job == jobs_.end()) continue;
    Job& j = *job->second;
    const Result<std::string>& published = done.results[k];
    if (published.ok())
      merge(j.results[done.publications[k].delivery_index], msg::DeliveryOutcome::delivered,
            "2.0.0", "delivered to maildir");
    else
      merge(j.results[done.publications[k].delivery_index], msg::DeliveryOutcome::temporary_failure,
            "4.3.0", published.error().message);
    settle(j);
  }
}

void MdaProcess::outside(Job& j, std::function<std::vector<Answer>()> run) {
  ++j.pending;
  outside_->post(std::make_unique<OutsideDelivery>(
      OutsideDelivery{.job = j.id, .run = std::move(run), .answers = {}}));
}

void MdaProcess::on_outside_answers(OutsideDelivery& d) {
  auto job = jobs_.find(d.job);
  if (job == jobs_.end()) return;
  Job& j = *job->second;
  for (const Answer& a : d.answers)
    if (a.delivery_index < j.results.size())
      merge(j.results[a.delivery_index], a.outcome, a.dsn, a.detail);
  settle(j);
}

void MdaProcess::settle(Job& j) {
  if (--j.pending == 0) finish(j.id);
}

void MdaProcess::finish(uint64_t id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  std::unique_ptr<Job> job = std::move(it->second);
  jobs_.erase(it);
  share_results(*job);
  reported_.remember(job->message.id, job->message.recipients, job->outcomes);
  // In frames that fit: a thousand recipients' error texts do not fit one.
  ipc::Channel* queue = runtime_.peer(Role::queue);
  msg::DeliveryReport frame{.id = job->message.id, .results = {}};
  size_t bytes = 0;
  bool sent = queue != nullptr;
  for (auto& r : job->outcomes) {
    // Forwarding happens once the rest of the recipient's mail is delivered, so a retry
    // never forwards twice.
    if (r.outcome != msg::DeliveryOutcome::delivered) r.forward.clear();
    if (r.detail.empty()) r.detail = r.forward.empty() ? "delivered" : "forwarded";
    if (r.detail.size() > msg::kMaxDeliveryDetail) r.detail.resize(msg::kMaxDeliveryDetail);
    ++runtime_.counters()[r.outcome == msg::DeliveryOutcome::delivered           ? "delivered"
                          : r.outcome == msg::DeliveryOutcome::temporary_failure ? "deferred"
                                                                                 : "bounced"];
    size_t size = 32 + r.dsn.size() + r.detail.size();
    for (const auto& f : r.forward) size += 4 + f.size();
    if (bytes + size > kReportFrameBudget && !frame.results.empty()) {
      frame.last = false;
      sent = sent && msg::send(*queue, frame, job->request_id);
      frame.results.clear();
      bytes = 0;
    }
    frame.results.push_back(std::move(r));
    bytes += size;
  }
  frame.last = true;
  sent = sent && msg::send(*queue, frame, job->request_id);
  if (!sent) log::warn("%s: cannot report deliveries to the queue", frame.id.c_str());
}

void MdaProcess::to_helper(Job& j, size_t delivery, const msg::Destination& d) {
  const size_t first = j.deliveries[delivery].recipients.front();
  helper_waiting_.push_back({j.id, delivery,
                             msg::HelperDeliver{.size = j.message.size,
                                                .recipient = j.message.recipients[first].address,
                                                .sender = j.message.sender,
                                                .destination = d,
                                                .unique = unique_name(),
                                                .timeout_seconds = settings_.delivery_timeout}});
  ++j.pending;
  ask_for_helpers();
}

void MdaProcess::ask_for_helpers() {
  while (!helper_waiting_.empty() && helper_in_flight_.size() < msg::kMaxHelpers) {
    HelperTask task = std::move(helper_waiting_.front());
    helper_waiting_.pop_front();
    auto job = jobs_.find(task.job);
    if (job == jobs_.end()) continue;
    Job& j = *job->second;
    if (!j.helper_copy) {
      Result<UniqueFd> copy = sealed_copy(j.fd.get(), j.message.size);
      if (!copy.ok()) {
        complete(task, msg::DeliveryOutcome::temporary_failure, "4.3.0",
                 "cannot copy the message for its helper: " + copy.error().message);
        continue;
      }
      j.helper_copy = std::move(copy).value();
    }
    const uint32_t request = next_request_++;
    UniqueFd lent(fcntl(j.helper_copy.get(), F_DUPFD_CLOEXEC, 0));
    if (!lent || !msg::send(runtime_.parent(), task.request, request, std::move(lent))) {
      complete(task, msg::DeliveryOutcome::temporary_failure, "4.3.0",
               "cannot ask the parent for a delivery helper");
      continue;
    }
    helper_in_flight_.emplace(request, std::move(task));
  }
}

void MdaProcess::helper_answered(uint32_t request, msg::DeliveryOutcome outcome,
                                 const std::string& dsn, const std::string& detail) {
  auto it = helper_in_flight_.find(request);
  if (it == helper_in_flight_.end()) return;
  HelperTask task = std::move(it->second);
  helper_in_flight_.erase(it);
  complete(task, outcome, dsn, detail);
  ask_for_helpers();
}

void MdaProcess::complete(const HelperTask& task, msg::DeliveryOutcome outcome,
                          const std::string& dsn, const std::string& detail) {
  auto job = jobs_.find(task.job);
  if (job == jobs_.end()) return;
  Job& j = *job->second;
  if (task.delivery < j.results.size()) merge(j.results[task.delivery], outcome, dsn, detail);
  settle(j);
}

std::string MdaProcess::unique_name() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return std::to_string(tv.tv_sec) + ".M" + std::to_string(tv.tv_usec) + "P" +
         std::to_string(getpid()) + "Q" + std::to_string(++deliveries_) + "." + settings_.hostname;
}

}  // namespace postern::mda
