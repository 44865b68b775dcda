// The fixture of the tests that run a real MtaProcess (mta_process_test.cpp,
// shaping_process_test.cpp): the process forked in SetUp, the test playing the parent, the queue,
// lookup and control.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mta/mta_process.hpp"
#include "tests/unit/common/mail/script_server.hpp"
#include "tests/unit/support/process_harness.hpp"

namespace postern::mta {

using mail::MessageFile;
using test::PeerEnd;
using test::ProcessUnderTest;

inline const std::string kMessage =
    "Received: from a by b\r\nSubject: test\r\n\r\nhello\r\n.dot\r\n";

inline mail::RelayHop hop(uint16_t port) {
  return {.scheme = mail::RelayScheme::smtp, .host = "127.0.0.1", .literal = true, .port = port};
}

class MtaProcessTest : public ::testing::Test {
 protected:
  // Forked here, before a test's scripted server starts its thread: a child forked while
  // another thread is inside the sanitizer's allocator can hang on its lock.
  void SetUp() override {
    mta_.emplace(Role::mta, [](ChildRuntime& runtime) {
      MtaProcess mta(runtime);
      return runtime.run();
    });
  }

  void start(std::vector<Route> routes, std::vector<std::string> local = {},
             uint32_t destination_connections = 20, uint32_t connections = 500,
             uint32_t messages_per_connection = 100) {
    Settings settings{
        .hostname = "mta.test", .routes = std::move(routes), .local_addresses = std::move(local)};
    settings.destination_connections = destination_connections;
    settings.connections = connections;
    settings.messages_per_connection = messages_per_connection;
    start(settings);
  }

  void start(const Settings& settings) {
    ASSERT_TRUE(mta_->parent().send(settings));
    queue_ = &mta_->connect(Role::queue);
    lookup_ = &mta_->connect(Role::lookup);
    control_ = &mta_->connect(Role::control);
    ASSERT_TRUE(mta_->start());
  }

  bool deliver(const std::vector<std::string>& recipients, uint32_t request,
               const std::string& bytes = kMessage, Envelope envelope = {}) {
    return deliver_frame(recipients, request, false, 10, bytes, std::move(envelope));
  }

  // One frame of a job: its recipients' indexes start at first; more: further frames follow.
  bool deliver_frame(const std::vector<std::string>& recipients, uint32_t request, bool more,
                     uint32_t first, const std::string& bytes = kMessage, Envelope envelope = {}) {
    files_.emplace_back(bytes);
    if (envelope.id.empty()) envelope.id = "0123456789abcdef";
    if (envelope.sender.empty()) envelope.sender = "bob@example.org";
    envelope.size = bytes.size();
    msg::DeliverRemote job{.envelope = envelope, .recipients = {}, .more = more};
    for (size_t i = 0; i < recipients.size(); ++i)
      job.recipients.push_back({.index = static_cast<uint32_t>(i + first),
                                .address = recipients[i],
                                .orcpt_type = "",
                                .orcpt = "",
                                .notify = {}});
    return queue_->send(job, request, UniqueFd(dup(files_.back().data().fd)));
  }

  // The whole report for a request: its frames' results, by the recipient's index.
  std::map<uint32_t, msg::DeliveryResult> report(uint32_t request) {
    std::map<uint32_t, msg::DeliveryResult> results;
    for (;;) {
      auto frame = mta_->await<msg::DeliveryReport>(*queue_, std::chrono::seconds(20));
      if (!frame) {
        ADD_FAILURE() << "no report for request " << request;
        return results;
      }
      EXPECT_EQ(frame->request_id, request);
      EXPECT_EQ(frame->message.id, "0123456789abcdef");
      for (auto& r : frame->message.results) results[r.index] = r;
      if (frame->message.last) return results;
    }
  }

  // The whole report for a request, each of its n recipients expected delivered.
  std::map<uint32_t, msg::DeliveryResult> report_delivered(uint32_t request, size_t n) {
    auto results = report(request);
    EXPECT_EQ(results.size(), n);
    for (const auto& [index, r] : results)
      EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << index << ": " << r.detail;
    return results;
  }

  // lookup's side: the next MxQuery, answered with a.
  std::optional<msg::MxQuery> answer_mx(const msg::MxAnswer& a) {
    auto ask = mta_->await<msg::MxQuery>(*lookup_);
    if (!ask) return std::nullopt;
    EXPECT_TRUE(lookup_->send(a, ask->request_id));
    return ask->message;
  }

  std::optional<ProcessUnderTest> mta_;
  PeerEnd* queue_ = nullptr;
  PeerEnd* lookup_ = nullptr;
  PeerEnd* control_ = nullptr;
  std::deque<MessageFile> files_;
};

}  // namespace postern::mta
