// Tests for mda/mda_process.cpp: a real MdaProcess in a forked child (process_harness.hpp), the
// test playing the parent, the queue and lookup over socketpairs. Jobs from the queue, routes
// asked of lookup, Maildir and mbox deliveries into a temporary directory, a helper's delivery
// asked of the parent with a sealed copy, and the report back to the queue: one result per
// recipient, each destination delivered once, and nothing delivered twice for a queue that
// restarts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "common/util/io.hpp"
#include "mda/mda_process.hpp"
#include "tests/unit/support/process_harness.hpp"

namespace postern::mda {
namespace {

namespace fs = std::filesystem;
using test::PeerEnd;
using test::ProcessUnderTest;
using test::Received;

constexpr std::string_view kBody = "Subject: test\r\n\r\nhello\r\n";

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(dir, ignored)) files.push_back(entry.path());
  return files;
}

msg::LocalRoute route_to(msg::DeliveryMethod method, std::string target, std::string mailbox,
                         std::string user = "") {
  return {.status = msg::RouteStatus::ok,
          .error = "",
          .destinations = {{.method = method,
                            .target = std::move(target),
                            .user = std::move(user),
                            .mailbox = std::move(mailbox)}}};
}

class MdaProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mda_.emplace(Role::mda, [](ChildRuntime& runtime) {
      MdaProcess mda(runtime);
      return runtime.run();
    });
    ASSERT_TRUE(
        mda_->parent().send(Settings{.hostname = "mx.example.org", .delivery_timeout = 30}));
    queue_ = &mda_->connect(Role::queue);
    lookup_ = &mda_->connect(Role::lookup);
    ASSERT_TRUE(mda_->start());
  }

  template <typename M>
  std::optional<Received<M>> await(PeerEnd& end) {
    return mda_->await<M>(end);
  }

  // The message as the queue hands it: a read-only descriptor.
  UniqueFd message_fd() {
    const fs::path path = dir_.path() + "/spooled";
    if (!fs::exists(path)) std::ofstream(path, std::ios::binary) << kBody;
    return UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  }

  bool deliver(const std::string& id, const std::vector<std::string>& recipients,
               uint32_t request) {
    msg::DeliverLocal job{
        .id = id, .size = kBody.size(), .sender = "bob@example.org", .recipients = {}};
    for (size_t i = 0; i < recipients.size(); ++i)
      job.recipients.push_back({.index = static_cast<uint32_t>(i), .address = recipients[i]});
    return queue_->send(job, request, message_fd());
  }

  // lookup's side: answers the next ResolveLocal with routes; the addresses it was asked.
  std::vector<std::string> answer_routes(std::vector<msg::LocalRoute> routes) {
    auto ask = await<msg::ResolveLocal>(*lookup_);
    if (!ask) return {};
    EXPECT_TRUE(lookup_->send(msg::LocalRoutes{.routes = std::move(routes), .last = true},
                              ask->request_id));
    return ask->message.addresses;
  }

  std::string maildir(const std::string& user) { return dir_.path() + "/" + user + "/Maildir"; }

  test::TempDir dir_;
  std::optional<ProcessUnderTest> mda_;
  PeerEnd* queue_ = nullptr;
  PeerEnd* lookup_ = nullptr;
};

TEST_F(MdaProcessTest, DeliversToAMaildirAndReports) {
  ASSERT_TRUE(deliver("0123456789abcdef", {"alice@example.org"}, 77));
  EXPECT_EQ(answer_routes(
                {route_to(msg::DeliveryMethod::maildir, maildir("alice"), "alice@example.org")}),
            std::vector<std::string>{"alice@example.org"});
  auto report = await<msg::DeliveryReport>(*queue_);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->request_id, 77u);
  EXPECT_EQ(report->message.id, "0123456789abcdef");
  EXPECT_TRUE(report->message.last);
  ASSERT_EQ(report->message.results.size(), 1u);
  EXPECT_EQ(report->message.results[0].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(report->message.results[0].dsn, "2.0.0");
  // Reported only once the file is in new/.
  const auto delivered = files_in(maildir("alice") + "/new");
  ASSERT_EQ(delivered.size(), 1u);
  const std::string text = slurp(delivered[0]);
  EXPECT_NE(text.find("Return-Path: <bob@example.org>"), std::string::npos) << text;
  EXPECT_NE(text.find("Delivered-To: alice@example.org"), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with(kBody)) << text;
  EXPECT_TRUE(files_in(maildir("alice") + "/tmp").empty());
}

// Two recipients whose routes name the same Maildir (an alias) get one file and both the
// outcome; each route's status gives the others theirs.
TEST_F(MdaProcessTest, OneFilePerDestinationAndAResultPerRecipient) {
  ASSERT_TRUE(deliver("0123456789abcdef",
                      {"alice@example.org", "postmaster@example.org", "nobody@example.org",
                       "busy@example.org", "loop@example.org"},
                      5));
  auto alice = route_to(msg::DeliveryMethod::maildir, maildir("alice"), "alice@example.org");
  answer_routes(
      {alice,
       alice,
       {.status = msg::RouteStatus::unknown_user, .error = "no such user", .destinations = {}},
       {.status = msg::RouteStatus::temporary, .error = "table reloading", .destinations = {}},
       {.status = msg::RouteStatus::loop, .error = "alias loop", .destinations = {}}});
  auto report = await<msg::DeliveryReport>(*queue_);
  ASSERT_TRUE(report);
  ASSERT_EQ(report->message.results.size(), 5u);
  std::vector<std::pair<msg::DeliveryOutcome, std::string>> got;
  for (const auto& r : report->message.results) {
    ASSERT_LT(r.index, 5u);
    got.resize(5);
    got[r.index] = {r.outcome, r.dsn};
  }
  EXPECT_EQ(got[0], std::pair(msg::DeliveryOutcome::delivered, std::string("2.0.0")));
  EXPECT_EQ(got[1], std::pair(msg::DeliveryOutcome::delivered, std::string("2.0.0")));
  EXPECT_EQ(got[2], std::pair(msg::DeliveryOutcome::permanent_failure, std::string("5.1.1")));
  EXPECT_EQ(got[3], std::pair(msg::DeliveryOutcome::temporary_failure, std::string("4.3.0")));
  EXPECT_EQ(got[4], std::pair(msg::DeliveryOutcome::permanent_failure, std::string("5.4.6")));
  EXPECT_EQ(files_in(maildir("alice") + "/new").size(), 1u);
}

TEST_F(MdaProcessTest, DeliversToAnMboxAndPassesForwardsOn) {
  const std::string box = dir_.path() + "/carol.mbox";
  ASSERT_TRUE(deliver("0123456789abcdef", {"carol@example.org", "dave@example.org"}, 9));
  answer_routes(
      {route_to(msg::DeliveryMethod::mbox, box, "carol@example.org"),
       route_to(msg::DeliveryMethod::forward, "dave@elsewhere.example", "dave@example.org")});
  auto report = await<msg::DeliveryReport>(*queue_);
  ASSERT_TRUE(report);
  ASSERT_EQ(report->message.results.size(), 2u);
  for (const auto& r : report->message.results) {
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << r.detail;
    const std::vector<std::string> forward =
        r.index == 1 ? std::vector<std::string>{"dave@elsewhere.example"}
                     : std::vector<std::string>{};
    EXPECT_EQ(r.forward, forward) << r.index;
  }
  const std::string text = slurp(box);
  EXPECT_TRUE(text.starts_with("From bob@example.org ")) << text;
  EXPECT_NE(text.find("hello"), std::string::npos);
}

// A system user's delivery goes to the parent as one HelperDeliver with a sealed copy of the
// message (never the spool file); the parent's answer becomes the recipient's result.
TEST_F(MdaProcessTest, SystemUsersDeliveryGoesThroughTheParent) {
  ASSERT_TRUE(deliver("0123456789abcdef", {"erin@example.org", "frank@example.org"}, 11));
  answer_routes(
      {route_to(msg::DeliveryMethod::maildir, "~/Maildir", "erin@example.org", "erin"),
       route_to(msg::DeliveryMethod::maildir, "~/Maildir", "frank@example.org", "frank")});
  auto first = await<msg::HelperDeliver>(mda_->parent());
  ASSERT_TRUE(first);
  auto second = await<msg::HelperDeliver>(mda_->parent());
  ASSERT_TRUE(second);
  EXPECT_EQ(first->message.sender, "bob@example.org");
  EXPECT_EQ(first->message.size, kBody.size());
  ASSERT_TRUE(first->fd);
  EXPECT_EQ(fcntl(first->fd.get(), F_GET_SEALS) & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK),
            F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
  std::string copy(kBody.size(), '\0');
  ASSERT_EQ(pread(first->fd.get(), copy.data(), copy.size(), 0), static_cast<ssize_t>(copy.size()));
  EXPECT_EQ(copy, kBody);
  // One delivered, one refused.
  const bool first_is_erin = first->message.recipient == "erin@example.org";
  ASSERT_TRUE(mda_->parent().send(
      msg::HelperResult{.outcome = msg::DeliveryOutcome::delivered, .dsn = "2.0.0", .detail = "ok"},
      first->request_id));
  ASSERT_TRUE(mda_->parent().send(msg::HelperRefused{.user = "frank", .error = "no such account"},
                                  second->request_id));
  auto report = await<msg::DeliveryReport>(*queue_);
  ASSERT_TRUE(report);
  ASSERT_EQ(report->message.results.size(), 2u);
  for (const auto& r : report->message.results) {
    const bool erin = r.index == 0;
    const bool delivered_one = erin == first_is_erin;
    EXPECT_EQ(r.outcome, delivered_one ? msg::DeliveryOutcome::delivered
                                       : msg::DeliveryOutcome::temporary_failure)
        << r.index << " " << r.detail;
  }
}

// lookup restarting while routes are asked: the question is asked again of the new lookup.
TEST_F(MdaProcessTest, RoutesAreAskedAgainWhenLookupComesBack) {
  ASSERT_TRUE(deliver("0123456789abcdef", {"alice@example.org"}, 3));
  ASSERT_TRUE(await<msg::ResolveLocal>(*lookup_));
  lookup_->close();
  lookup_ = &mda_->connect(Role::lookup);
  answer_routes({route_to(msg::DeliveryMethod::maildir, maildir("alice"), "alice@example.org")});
  auto report = await<msg::DeliveryReport>(*queue_);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->message.results.at(0).outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(files_in(maildir("alice") + "/new").size(), 1u);
}

// A queue that restarts hands out again what it had not recorded: what mda reported lately is
// answered from memory, not delivered a second time.
TEST_F(MdaProcessTest, ARestartedQueueIsAnsweredWithoutDeliveringAgain) {
  ASSERT_TRUE(deliver("0123456789abcdef", {"alice@example.org"}, 3));
  answer_routes({route_to(msg::DeliveryMethod::maildir, maildir("alice"), "alice@example.org")});
  ASSERT_TRUE(await<msg::DeliveryReport>(*queue_));
  queue_->close();
  queue_ = &mda_->connect(Role::queue);
  ASSERT_TRUE(deliver("0123456789abcdef", {"alice@example.org"}, 4));
  auto report = await<msg::DeliveryReport>(*queue_);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->request_id, 4u);
  EXPECT_EQ(report->message.results.at(0).outcome, msg::DeliveryOutcome::delivered);
  EXPECT_FALSE(lookup_->has<msg::ResolveLocal>());
  EXPECT_EQ(files_in(maildir("alice") + "/new").size(), 1u);
}

}  // namespace
}  // namespace postern::mda
