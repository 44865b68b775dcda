// The queue process in a forked child on a temporary spool, with the test playing the parent,
// smtp, mda, mta, lookup and smtpctl over socketpairs (process_harness.hpp), and what the spool
// holds read back with the spool format's own decoder. Shared by the tests of the process
// (queue_process_test.cpp) and of its scheduler (scheduler_test.cpp).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "common/mail/envelope.hpp"
#include "common/util/io.hpp"
#include "mta/api.hpp"
#include "queue/api.hpp"
#include "queue/envelope_file.hpp"
#include "queue/queue_process.hpp"
#include "queue/spool.hpp"
#include "tests/unit/support/process_harness.hpp"

namespace postern::queue::test_support {

namespace fs = std::filesystem;
using test::PeerEnd;
using test::ProcessUnderTest;
using test::Received;

constexpr uint32_t kRetryFirst = 60;
constexpr uint32_t kRetryMax = 200;  // 60, 120, then capped at 200
constexpr std::string_view kBody = "Subject: test\r\n\r\nhello\r\n";

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message's envelope as the spool has it now: its envelope file, else its commit record.
inline std::optional<Envelope> spooled_envelope(const fs::path& spool, const std::string& id) {
  const fs::path env = spool / "queue" / (id + ".env");
  if (fs::exists(env)) {
    Result<Envelope> e = decode_envelope(slurp(env));
    return e.ok() ? std::optional<Envelope>(e.value()) : std::nullopt;
  }
  const std::string data = slurp(spool / "queue" / (id + ".msg"));
  if (data.size() < kCommitFooterSize) return std::nullopt;
  const auto footer =
      parse_commit_footer(std::string_view(data).substr(data.size() - kCommitFooterSize));
  if (!footer || footer->size > data.size() - kCommitFooterSize) return std::nullopt;
  Result<Envelope> e = decode_envelope(
      std::string_view(data).substr(footer->size, data.size() - kCommitFooterSize - footer->size));
  return e.ok() ? std::optional<Envelope>(e.value()) : std::nullopt;
}

// The message a job hands mda: the first size bytes of its descriptor; empty if unreadable.
inline std::string job_text(const Received<msg::DeliverLocal>& job) {
  std::string text(job.message.size, '\0');
  if (!job.fd ||
      pread(job.fd.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    return "";
  return text;
}

// The message a job hands mta: the first envelope.size bytes of its descriptor, read from
// the descriptor as mta would (it never opens spool files); empty if unreadable.
inline std::string job_text(const Received<msg::DeliverRemote>& job) {
  std::string text(job.message.envelope.size, '\0');
  if (!job.fd ||
      pread(job.fd.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    return "";
  return text;
}

inline bool spooled(const fs::path& spool, const std::string& id) {
  return fs::exists(spool / "queue" / (id + ".msg"));
}

inline Recipient rcpt(std::string address) {
  Recipient r;
  r.address = std::move(address);
  return r;
}

// A committed message put in the spool before the queue starts, as a crashed queue leaves it:
// one recipient (alice@example.org unless said), tried `attempts` times, next due at next_try.
inline std::string spool_message(Spool& spool, int64_t next_try, uint32_t attempts = 0,
                                 const std::string& address = "alice@example.org") {
  Result<NewMessage> m = spool.create();
  if (!m.ok() || !write_all(m->ours.get(), kBody).ok()) return "";
  Envelope e;
  e.id = m->id;
  e.arrival = std::time(nullptr) - 600;
  e.sender = "bob@example.org";
  e.helo = "client.example.net";
  e.client_address = "192.0.2.1";
  e.listener = "smtp";
  e.next_try = next_try;
  Recipient r = rcpt(address);
  r.attempts = attempts;
  e.recipients.push_back(r);
  if (!spool.commit(e, m.value()).ok()) return "";
  return m->id;
}

class QueueTest : public ::testing::Test {
 protected:
  // Starts the queue on the spool with the test's peers; config as the parent would send it.
  void start_queue(queue::Settings config = {}) {
    if (config.spool_dir.empty()) config.spool_dir = spool_.path();
    if (config.local_domains.empty()) config.local_domains = {"example.org"};
    if (config.hostname.empty()) config.hostname = "mx.example.org";
    if (config.retry_first == queue::Settings{}.retry_first) {
      config.retry_first = kRetryFirst;
      config.retry_max = kRetryMax;
    }
    queue_.reset();
    queue_.emplace(Role::queue, [](ChildRuntime& runtime) {
      QueueProcess queue(runtime);
      return runtime.run();
    });
    ASSERT_TRUE(queue_->parent().send(config));
    smtp_ = &queue_->connect(Role::smtp);
    mda_ = &queue_->connect(Role::mda);
    lookup_ = &queue_->connect(Role::lookup);
    control_ = &queue_->connect(Role::control);
    mta_ = &queue_->connect(Role::mta);
    ASSERT_TRUE(queue_->start());
  }

  template <typename M>
  std::optional<Received<M>> await(PeerEnd& end) {
    return queue_->await<M>(end);
  }

  // smtp's side of a transaction up to the commit; the message's id, or empty.
  std::string open_and_write(std::string_view body = kBody) {
    EXPECT_TRUE(smtp_->send(msg::MessageOpen{}, ++request_));
    auto opened = await<msg::MessageOpened>(*smtp_);
    if (!opened || !opened->fd) {
      ADD_FAILURE() << "no MessageOpened with a descriptor";
      return "";
    }
    EXPECT_EQ(opened->request_id, request_);
    EXPECT_TRUE(valid_queue_id(opened->message.id));
    EXPECT_TRUE(write_all(opened->fd.get(), body).ok());
    return opened->message.id;
  }

  bool commit(const std::string& id, int64_t arrival, uint32_t count, uint64_t session = 7,
              const std::string& sender = "bob@example.org") {
    msg::MessageCommit c;
    c.envelope.id = id;
    c.envelope.arrival = arrival;
    c.envelope.sender = sender;
    c.envelope.helo = "client.example.net";
    c.envelope.client_address = "192.0.2.1";
    c.envelope.listener = "smtp";
    c.recipient_count = count;
    c.session = session;
    if (adjust_envelope_) adjust_envelope_(c.envelope);
    return smtp_->send(c, ++request_);
  }

  // smtp's side of a whole transaction, up to the commit sent; the message's id, or empty.
  std::string transact(std::vector<Recipient> recipients, int64_t arrival,
                       const std::string& sender) {
    std::string id = open_and_write();
    if (id.empty()) return "";
    const auto count = static_cast<uint32_t>(recipients.size());
    EXPECT_TRUE(smtp_->send(msg::MessageRecipients{.id = id, .recipients = std::move(recipients)}));
    EXPECT_TRUE(commit(id, arrival, count, 7, sender));
    return id;
  }

  // A whole transaction; the MessageResult.
  std::optional<Received<msg::MessageResult>> submit(
      std::vector<Recipient> recipients, int64_t arrival = std::time(nullptr),
      const std::string& sender = "bob@example.org") {
    if (transact(std::move(recipients), arrival, sender).empty()) return std::nullopt;
    return await<msg::MessageResult>(*smtp_);
  }

  // lookup's side of the relay check of a commit with remote recipients: it vouches.
  bool vouch() {
    auto check = await<msg::RelayCheck>(*lookup_);
    return check &&
           lookup_->send(msg::RelayVerdict{.allowed = true, .temporary = false, .reason = ""},
                         check->request_id);
  }

  // A whole transaction for local recipients, committed; the job it becomes for mda.
  std::optional<Received<msg::DeliverLocal>> submit_for_mda(
      std::vector<Recipient> recipients, int64_t arrival = std::time(nullptr),
      const std::string& sender = "bob@example.org") {
    auto result = submit(std::move(recipients), arrival, sender);
    if (!result || result->message.outcome != msg::MessageOutcome::committed) return std::nullopt;
    auto job = await<msg::DeliverLocal>(*mda_);
    if (job && job->message.id != result->message.id) return std::nullopt;
    return job;
  }

  // No job reaches mda for a while.
  bool mda_gets_nothing(std::chrono::milliseconds quiet = std::chrono::milliseconds(300)) {
    return !queue_->run_until([&] { return mda_->has<msg::DeliverLocal>(); }, quiet);
  }

  // mda's answer to a job: one result per recipient handed out.
  bool report(const Received<msg::DeliverLocal>& job, msg::DeliveryOutcome outcome,
              const std::string& dsn, const std::string& detail = "test") {
    msg::DeliveryReport r{.id = job.message.id, .results = {}, .last = true};
    for (const auto& local : job.message.recipients)
      r.results.push_back({.index = local.index,
                           .outcome = outcome,
                           .dsn = dsn,
                           .detail = detail,
                           .forward = {},
                           .expanded = false});
    return mda_->send(r, job.request_id);
  }

  // A whole transaction with remote recipients: lookup vouches for the session, the message
  // is committed; the job it becomes for mta.
  std::optional<Received<msg::DeliverRemote>> submit_for_mta(
      std::vector<Recipient> recipients, int64_t arrival = std::time(nullptr),
      const std::string& sender = "bob@example.org") {
    const std::string id = transact(std::move(recipients), arrival, sender);
    if (id.empty() || !vouch()) return std::nullopt;
    auto result = await<msg::MessageResult>(*smtp_);
    if (!result || result->message.outcome != msg::MessageOutcome::committed) return std::nullopt;
    auto job = await<msg::DeliverRemote>(*mta_);
    if (job && job->message.envelope.id != id) return std::nullopt;
    return job;
  }

  // No job reaches mta for a while.
  bool mta_gets_nothing(std::chrono::milliseconds quiet = std::chrono::milliseconds(300)) {
    return !queue_->run_until([&] { return mta_->has<msg::DeliverRemote>(); }, quiet);
  }

  // mta's answer to a job: one result per recipient handed out, from the server remote_mta.
  bool report(const Received<msg::DeliverRemote>& job, msg::DeliveryOutcome outcome,
              const std::string& dsn, const std::string& detail, uint32_t retry_after = 0,
              const std::string& remote_mta = "mx.remote.example[192.0.2.25]:25") {
    msg::DeliveryReport r{.id = job.message.envelope.id, .results = {}, .last = true};
    for (const auto& remote : job.message.recipients)
      r.results.push_back({.index = remote.index,
                           .outcome = outcome,
                           .dsn = dsn,
                           .detail = detail,
                           .forward = {},
                           .expanded = false,
                           .remote_mta = remote_mta,
                           .retry_after = retry_after});
    return mta_->send(r, job.request_id);
  }

  // Waits until the spool's envelope of id satisfies done.
  bool await_spool(const std::string& id, const std::function<bool(const Envelope&)>& done) {
    return queue_->run_until([&] {
      auto e = spooled_envelope(spool_.path(), id);
      return e && done(*e);
    });
  }

  bool await_removed(const std::string& id) {
    return queue_->run_until([&] { return !spooled(spool_.path(), id); });
  }

  std::string show_message(const std::string& id) {
    return ask_control(msg::CtlShowMessage{.id = id});
  }

  std::string show_queue() { return ask_control(msg::CtlShowQueue{}); }

  // A request to the queue as smtpctl sends it; the whole text of the answer.
  template <typename M>
  std::string ask_control(const M& request) {
    EXPECT_TRUE(control_->send(request, ++request_));
    std::string text;
    while (true) {
      if (!queue_->run_until(
              [&] { return control_->has<msg::CtlText>() || control_->has<msg::CtlResult>(); }))
        return "(no answer)";
      if (auto piece = control_->take<msg::CtlText>()) {
        text += piece->message.text;
        continue;
      }
      auto result = control_->take<msg::CtlResult>();
      if (!result || !result->message.ok) return "(refused)";
      return text;
    }
  }

  test::TempDir spool_;
  std::optional<ProcessUnderTest> queue_;
  PeerEnd* smtp_ = nullptr;
  PeerEnd* mda_ = nullptr;
  PeerEnd* lookup_ = nullptr;
  PeerEnd* control_ = nullptr;
  PeerEnd* mta_ = nullptr;
  uint32_t request_ = 0;
  // Sets more of the envelope smtp commits (MAIL parameters).
  std::function<void(Envelope&)> adjust_envelope_;
};

}  // namespace postern::queue::test_support
