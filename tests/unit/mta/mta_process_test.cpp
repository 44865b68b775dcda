// Tests for mta/mta_process.cpp and mta/relay.cpp: a real MtaProcess in a forked child under its
// own seccomp filter (process_harness.hpp), the test playing the parent, the queue and lookup,
// and scripted SMTP servers on loopback (script_server.hpp) as the remote side. Routes by
// `routes:` and by MX, a pipelined transaction per message and destination, the 452 split,
// per-recipient results, failover past a refused port, the connection cache, loops, SIZE and
// SMTPUTF8, the DSN parameters passed on, and the source addresses connections leave from.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mta/mta_process.hpp"
#include "tests/unit/common/mail/script_server.hpp"
#include "tests/unit/mta/mta_fixture.hpp"
#include "tests/unit/support/process_harness.hpp"

namespace postern::mta {
namespace {

using mail::Conn;
using mail::TestServer;

// What a sink saw of one transaction.
struct Seen {
  std::string mail;
  std::vector<std::string> rcpts;
  bool pipelined = false;  // MAIL, every RCPT and DATA came before the first reply
  std::string body;
  std::string peer;  // the client's address
};

// A well-behaved server that offers PIPELINING and answers only once DATA came (so a client
// that does not pipeline never gets a reply and the test fails): RCPT to "temp*" gets 450,
// "perm*" 550, and recipients beyond max_rcpt in one transaction 452 4.5.3.
class Sink {
 public:
  explicit Sink(size_t max_rcpt = 1000, std::string extensions = "250-8BITMIME\r\n250-DSN\r\n")
      : max_rcpt_(max_rcpt),
        extensions_(std::move(extensions)),
        server_([this](Conn& c) { serve(c); }) {}
  uint16_t port() const {
    return ntohs(reinterpret_cast<const sockaddr_in&>(server_.endpoint().inet->storage).sin_port);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  int connections() { return server_.connections(); }

 private:
  void serve(Conn& c) {
    c.send("220 sink.test ESMTP\r\n");
    if (c.line().empty()) return;
    c.send("250-sink.test\r\n250-PIPELINING\r\n" + extensions_ + "250 SIZE 1000000\r\n");
    for (;;) {
      std::string line = c.line();
      if (line.empty()) return;
      if (line == "QUIT") {
        c.send("221 bye\r\n");
        return;
      }
      if (line == "RSET") {
        c.send("250 ok\r\n");
        continue;
      }
      if (!line.starts_with("MAIL FROM:")) {
        c.send("503 bad sequence\r\n");
        continue;
      }
      Seen t;
      t.mail = line;
      t.peer = c.peer();
      for (line = c.line(); line.starts_with("RCPT TO:"); line = c.line()) t.rcpts.push_back(line);
      if (line != "DATA") return;
      t.pipelined = true;
      std::string replies = "250 2.1.0 ok\r\n";
      size_t accepted = 0;
      for (size_t i = 0; i < t.rcpts.size(); ++i) {
        if (i >= max_rcpt_) {
          replies += "452 4.5.3 Too many recipients\r\n";
        } else if (t.rcpts[i].starts_with("RCPT TO:<temp")) {
          replies += "450 4.2.0 mailbox busy\r\n";
        } else if (t.rcpts[i].starts_with("RCPT TO:<perm")) {
          replies += "550 5.1.1 no such user\r\n";
        } else {
          replies += "250 2.1.5 ok\r\n";
          ++accepted;
        }
      }
      if (accepted == 0) {
        c.send(replies + "554 5.5.1 no valid recipients\r\n");
        continue;
      }
      c.send(replies + "354 go ahead\r\n");
      const auto body = c.data();
      if (!body) return;
      t.body = *body;
      {
        std::lock_guard lock(mutex_);
        seen_.push_back(t);
      }
      c.send("250 2.0.0 queued as X\r\n");
    }
  }

  size_t max_rcpt_;
  std::string extensions_;
  std::mutex mutex_;
  std::vector<Seen> seen_;
  TestServer server_;  // last: its threads stop before the rest goes
};

// A loopback port nobody listens on: connections to it are refused.
uint16_t refused_port() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return 1;
  return ntohs(a.sin_port);
}

#ifndef POSTERN_TEST_DATA_DIR
#error "POSTERN_TEST_DATA_DIR must name tests/data"
#endif

// Postfix's smtp-sink on a free loopback port, dumping each transaction into a directory:
// a real server as a route's peer. tests/postfix_tools.py finds it (fetching the Debian
// package the first time); available() is false when it cannot.
class PostfixSink {
 public:
  PostfixSink(const PostfixSink&) = delete;
  PostfixSink& operator=(const PostfixSink&) = delete;
  PostfixSink() {
    const std::string helper = std::string(POSTERN_TEST_DATA_DIR) + "/../postfix_tools.py";
    FILE* p = popen(("python3 " + helper + " smtp-sink 2>/dev/null").c_str(), "r");
    if (p == nullptr) return;
    char line[4096];
    std::string path;
    std::string libdir;
    if (fgets(line, sizeof line, p) != nullptr) path = line;
    if (fgets(line, sizeof line, p) != nullptr) libdir = line;
    if (pclose(p) != 0 || path.empty()) return;
    path.erase(path.find_last_not_of('\n') + 1);
    libdir.erase(libdir.find_last_not_of('\n') + 1);
    dumps_ = std::filesystem::path(dir_.path()) / "dumps";
    // Written by smtp-sink as nobody: the way there must be open to it.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add);
    std::filesystem::create_directory(dumps_);
    std::filesystem::permissions(dumps_, std::filesystem::perms::all);
    port_ = refused_port();
    const std::string listen = "127.0.0.1:" + std::to_string(port_);
    const std::string dump = (dumps_ / "m").string();
    pid_ = fork();
    if (pid_ == 0) {
      if (!libdir.empty()) setenv("LD_LIBRARY_PATH", libdir.c_str(), 1);
      // (As root it must be told whose privileges to take once listening.)
      if (geteuid() == 0)
        execl(path.c_str(), "smtp-sink", "-u", "nobody", "-d", dump.c_str(), listen.c_str(), "64",
              nullptr);
      else
        execl(path.c_str(), "smtp-sink", "-d", dump.c_str(), listen.c_str(), "64", nullptr);
      _exit(127);
    }
    for (int i = 0; i < 250 && !listening(); ++i) usleep(20000);
  }
  ~PostfixSink() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool available() const { return listening(); }
  uint16_t port() const { return port_; }
  size_t dumped() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dumps_)) ++n;
    return n;
  }

 private:
  bool listening() const {
    if (pid_ <= 0) return false;
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    return connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }

  test::TempDir dir_;
  std::filesystem::path dumps_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// One transaction for every recipient of the route, pipelined, with a result each.
TEST_F(MtaProcessTest, OnePipelinedTransactionPerDestination) {
  Sink sink;
  start({{.match = {"relay.test", "*.relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  ASSERT_TRUE(
      deliver({"a@relay.test", "b@r1.relay.test", "temp@relay.test", "perm@r2.relay.test"}, 7));
  auto results = report(7);
  ASSERT_EQ(results.size(), 4u);
  const std::string relay = "127.0.0.1[127.0.0.1]:" + std::to_string(sink.port());
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(results[10].dsn, "2.0.0");
  EXPECT_EQ(results[10].detail, "250 2.0.0 queued as X");
  EXPECT_EQ(results[10].remote_mta, relay);
  EXPECT_EQ(results[11].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(results[12].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results[12].dsn, "4.2.0");
  EXPECT_EQ(results[12].detail, "450 4.2.0 mailbox busy (in reply to RCPT)");
  EXPECT_EQ(results[13].outcome, msg::DeliveryOutcome::permanent_failure);
  EXPECT_EQ(results[13].dsn, "5.1.1");
  EXPECT_EQ(results[13].remote_mta, relay);
  const auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].pipelined);
  EXPECT_EQ(seen[0].mail, "MAIL FROM:<bob@example.org> SIZE=" + std::to_string(kMessage.size()));
  EXPECT_EQ(seen[0].rcpts.size(), 4u);
  EXPECT_EQ(seen[0].body, kMessage);
  EXPECT_EQ(sink.connections(), 1);
}

// A message whose recipients came in several frames (DeliverRemote::more) is one job: one
// transaction per destination, one report. A frame for another message under the same request
// id starts what had gathered as it was.
TEST_F(MtaProcessTest, AMessageInSeveralFramesIsOneTransactionPerDestination) {
  Sink sink;
  start({{.match = {"relay.test", "*.relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  ASSERT_TRUE(deliver_frame({"a@relay.test", "b@r1.relay.test"}, 7, true, 10));
  ASSERT_TRUE(deliver_frame({"c@relay.test"}, 7, true, 12));
  EXPECT_FALSE(mta_->await<msg::DeliveryReport>(*queue_, std::chrono::milliseconds(300)));
  EXPECT_TRUE(sink.seen().empty());
  ASSERT_TRUE(deliver_frame({"d@r2.relay.test", "e@relay.test"}, 7, false, 13));
  report_delivered(7, 5);
  auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].rcpts.size(), 5u);

  Envelope other;
  other.id = "fedcba9876543210";
  ASSERT_TRUE(deliver_frame({"f@relay.test"}, 8, true, 10));
  ASSERT_TRUE(deliver_frame({"g@relay.test"}, 8, false, 10, kMessage, other));
  std::map<std::string, size_t> delivered;
  for (int frames = 0; frames < 2;) {
    auto frame = mta_->await<msg::DeliveryReport>(*queue_, std::chrono::seconds(20));
    ASSERT_TRUE(frame);
    delivered[frame->message.id] += frame->message.results.size();
    frames += frame->message.last ? 1 : 0;
  }
  EXPECT_EQ(delivered,
            (std::map<std::string, size_t>{{"0123456789abcdef", 1}, {"fedcba9876543210", 1}}));
}

// 452 4.5.3 on RCPT: the rest go in further transactions, and later messages are split first.
TEST_F(MtaProcessTest, TooManyRecipientsGoInAFurtherTransaction) {
  Sink sink(2);
  start({{.match = {"relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  ASSERT_TRUE(
      deliver({"a@relay.test", "b@relay.test", "c@relay.test", "d@relay.test", "e@relay.test"}, 8));
  report_delivered(8, 5);
  auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 3u);
  std::vector<size_t> sizes;
  sizes.reserve(seen.size());
  for (const auto& t : seen) sizes.push_back(std::min<size_t>(t.rcpts.size(), 2));
  // The rest, split in two, may go over two connections at once, in either order.
  std::sort(sizes.begin() + 1, sizes.end());
  EXPECT_EQ(sizes, (std::vector<size_t>{2, 1, 2}));
  // Learned: the next message goes in transactions of 2 recipients from the start.
  ASSERT_TRUE(deliver({"f@relay.test", "g@relay.test", "h@relay.test"}, 9));
  report_delivered(9, 3);
  seen = sink.seen();
  ASSERT_EQ(seen.size(), 5u);
  std::vector<size_t> later = {seen[3].rcpts.size(), seen[4].rcpts.size()};
  std::sort(later.begin(), later.end());
  EXPECT_EQ(later, (std::vector<size_t>{1, 2}));
}

// Results go to the queue as they gather (32 at a time), in frames that are not the last, so a
// message to many slow destinations does not keep every result until its slowest is done.
TEST_F(MtaProcessTest, ResultsGoAsTheyGatherNotAllAtTheEnd) {
  Sink sink;
  start({{.match = {"relay.test"}, .via = {hop(sink.port())}, .auth = ""},
         {.match = {"dead.test"}, .via = {hop(refused_port())}, .auth = ""}});
  std::vector<std::string> rcpts;
  for (int i = 0; i < 33; ++i) rcpts.push_back("r" + std::to_string(i) + "@relay.test");
  rcpts.push_back("x@dead.test");
  ASSERT_TRUE(deliver(rcpts, 7));
  auto first = mta_->await<msg::DeliveryReport>(*queue_, std::chrono::seconds(20));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->request_id, 7u);
  EXPECT_FALSE(first->message.last);
  EXPECT_EQ(first->message.results.size(), 32u);
  auto second = mta_->await<msg::DeliveryReport>(*queue_, std::chrono::seconds(20));
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->message.last);
  EXPECT_EQ(second->message.results.size(), 2u);
  std::set<uint32_t> indexes;
  for (const auto* frame : {&first->message, &second->message})
    for (const auto& r : frame->results) indexes.insert(r.index);
  EXPECT_EQ(indexes.size(), 34u);  // each recipient once
}

// A refused port: the next server of the route takes the mail; with none left, deferred.
TEST_F(MtaProcessTest, FailsOverToTheNextServerThenDefers) {
  Sink sink;
  const uint16_t dead = refused_port();
  mail::RelayHop tls = hop(sink.port());
  tls.scheme = mail::RelayScheme::smtp_tls;
  start({{.match = {"relay.test"}, .via = {hop(dead), hop(sink.port())}, .auth = ""},
         {.match = {"dead.test"}, .via = {hop(dead), hop(dead)}, .auth = ""},
         {.match = {"tls.test"}, .via = {tls}, .auth = ""}});
  ASSERT_TRUE(deliver({"a@relay.test", "b@dead.test", "c@tls.test"}, 3));
  auto results = report(3);
  ASSERT_EQ(results.size(), 3u);
  // Never in the clear: deferred until the mta speaks TLS.
  EXPECT_EQ(results[12].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results[12].dsn, "4.7.10");
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::delivered) << results[10].detail;
  EXPECT_EQ(results[11].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results[11].dsn, "4.4.1");
  EXPECT_NE(results[11].detail.find("cannot connect to 127.0.0.1:" + std::to_string(dead)),
            std::string::npos)
      << results[11].detail;
  EXPECT_EQ(sink.seen().size(), 1u);
}

// A second message to the same destination goes over the connection the first one used.
TEST_F(MtaProcessTest, ReusesTheConnectionForTheNextMessage) {
  Sink sink;
  start({{.match = {"relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  ASSERT_TRUE(deliver({"a@relay.test"}, 1));
  EXPECT_EQ(report(1)[10].outcome, msg::DeliveryOutcome::delivered);
  ASSERT_TRUE(deliver({"b@relay.test"}, 2));
  EXPECT_EQ(report(2)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(sink.seen().size(), 2u);
  EXPECT_EQ(sink.connections(), 1);
  // smtpctl show relays: the connection, cached, and nothing waiting.
  ASSERT_TRUE(control_->send(msg::CtlShowRelays{}, 40));
  auto shown = mta_->await<msg::CtlResult>(*control_);
  ASSERT_TRUE(shown);
  EXPECT_EQ(shown->request_id, 40u);
  EXPECT_NE(shown->message.text.find("route 0 (relay.test): 1 connections (1 ready), 0 deliveries "
                                     "waiting"),
            std::string::npos)
      << shown->message.text;
}

// The requests of the next n reports of one recipient each, which come as each transaction
// ends, in any order; every one must say delivered.
std::set<uint32_t> delivered_requests(ProcessUnderTest& mta, PeerEnd& queue, size_t n) {
  std::set<uint32_t> reported;
  for (size_t i = 0; i < n; ++i) {
    auto frame = mta.await<msg::DeliveryReport>(queue);
    if (!frame) {
      ADD_FAILURE() << "only " << i << " reports of " << n;
      break;
    }
    reported.insert(frame->request_id);
    EXPECT_EQ(frame->message.results.size(), 1u);
    for (const msg::DeliveryResult& r : frame->message.results)
      EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << r.detail;
  }
  return reported;
}

// Two routes to one server share its cached connection (the cache by address), and a
// destination opens at most destination_connections at once.
TEST_F(MtaProcessTest, ConnectionsAreSharedByAddressAndCapped) {
  Sink sink;
  start({{.match = {"a.test"}, .via = {hop(sink.port())}, .auth = ""},
         {.match = {"b.test"}, .via = {hop(sink.port())}, .auth = ""}},
        {}, 2);
  ASSERT_TRUE(deliver({"x@a.test"}, 1));
  EXPECT_EQ(report(1)[10].outcome, msg::DeliveryOutcome::delivered);
  ASSERT_TRUE(deliver({"y@b.test"}, 2));
  EXPECT_EQ(report(2)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(sink.connections(), 1);
  for (uint32_t request = 3; request < 9; ++request) ASSERT_TRUE(deliver({"z@a.test"}, request));
  EXPECT_EQ(delivered_requests(*mta_, *queue_, 6), (std::set<uint32_t>{3, 4, 5, 6, 7, 8}));
  EXPECT_LE(sink.connections(), 2);
  EXPECT_EQ(sink.seen().size(), 8u);
}

// An idle plaintext connection is not a way around another destination's TLS policy: mail
// that must be encrypted never rides a cached connection made without TLS to the same server.
TEST_F(MtaProcessTest, ACachedPlaintextConnectionDoesNotCarryMailThatNeedsTls) {
  Sink sink;  // offers no STARTTLS
  start({{.match = {"a.test"}, .via = {hop(sink.port())}, .auth = "", .tls = mail::TlsPolicy::none},
         {.match = {"b.test"},
          .via = {hop(sink.port())},
          .auth = "",
          .tls = mail::TlsPolicy::encrypt}});
  ASSERT_TRUE(deliver({"x@a.test"}, 1));
  EXPECT_EQ(report(1)[10].outcome, msg::DeliveryOutcome::delivered);
  ASSERT_TRUE(deliver({"y@b.test"}, 2));
  const auto results = report(2);
  EXPECT_EQ(results.at(10).outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results.at(10).dsn, "4.7.10");
  EXPECT_EQ(sink.seen().size(), 1u);  // only a.test's message went through the sink
  EXPECT_EQ(sink.connections(), 2);
}

// A cached connection to a destination's second server does not take its mail while the
// first one is up (RFC 5321 5.1); one to its first server does.
TEST_F(MtaProcessTest, ACachedConnectionToALessPreferredServerIsNotUsed) {
  Sink first;
  Sink second;
  start({{.match = {"a.test"}, .via = {hop(first.port()), hop(second.port())}, .auth = ""},
         {.match = {"b.test"}, .via = {hop(second.port())}, .auth = ""},
         {.match = {"c.test"}, .via = {hop(first.port())}, .auth = ""}});
  ASSERT_TRUE(deliver({"x@b.test"}, 1));  // leaves a connection to the second server idle
  EXPECT_EQ(report(1)[10].outcome, msg::DeliveryOutcome::delivered);
  ASSERT_TRUE(deliver({"y@a.test"}, 2));
  EXPECT_EQ(report(2)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(first.seen().size(), 1u);
  EXPECT_EQ(second.seen().size(), 1u);
  ASSERT_TRUE(deliver({"z@c.test"}, 3));  // the first server's connection, cached, is shared
  EXPECT_EQ(report(3)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(first.seen().size(), 2u);
  EXPECT_EQ(first.connections(), 1);
  EXPECT_EQ(second.connections(), 1);
}

// What the MX answer says decides: null MX, no domain, a DNS failure, and a list that only
// leads back here.
TEST_F(MtaProcessTest, MxAnswersBounceOrDefer) {
  start({}, {"127.0.0.1:25"});
  ASSERT_TRUE(deliver({"a@null.test", "b@nowhere.test", "c@flaky.test", "d@loop.test"}, 4));
  std::map<std::string, msg::MxAnswer> answers = {
      {"null.test",
       {.status = msg::MxStatus::null_mx, .implicit = false, .hosts = {}, .error = ""}},
      {"nowhere.test",
       {.status = msg::MxStatus::no_domain, .implicit = false, .hosts = {}, .error = ""}},
      {"flaky.test",
       {.status = msg::MxStatus::temporary, .implicit = false, .hosts = {}, .error = "SERVFAIL"}},
      {"loop.test",
       {.status = msg::MxStatus::ok,
        .implicit = false,
        .hosts = {{10, "mx.loop.test", {"127.0.0.1"}}, {20, "b.loop.test", {"192.0.2.9"}}},
        .error = ""}}};
  for (int i = 0; i < 4; ++i) {
    auto ask = mta_->await<msg::MxQuery>(*lookup_);
    ASSERT_TRUE(ask);
    EXPECT_FALSE(ask->message.host);
    ASSERT_TRUE(answers.contains(ask->message.domain)) << ask->message.domain;
    ASSERT_TRUE(lookup_->send(answers[ask->message.domain], ask->request_id));
  }
  auto results = report(4);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::permanent_failure);
  EXPECT_EQ(results[10].dsn, "5.1.10");
  EXPECT_EQ(results[11].outcome, msg::DeliveryOutcome::permanent_failure);
  EXPECT_EQ(results[11].dsn, "5.1.2");
  EXPECT_EQ(results[12].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results[12].dsn, "4.4.3");
  EXPECT_EQ(results[13].outcome, msg::DeliveryOutcome::permanent_failure);
  EXPECT_EQ(results[13].dsn, "5.4.6");
}

// Connections that reach their message limit say QUIT while more mail waits: none of it is
// handed to a quitting session (where it was once lost, its job never answered).
TEST_F(MtaProcessTest, MailNeverWaitsOnAConnectionThatIsQuitting) {
  Sink sink;
  start({{.match = {"relay.test"}, .via = {hop(sink.port())}, .auth = ""}}, {}, 2, 500, 1);
  constexpr uint32_t kMessages = 40;
  for (uint32_t request = 1; request <= kMessages; ++request)
    ASSERT_TRUE(deliver({"a@relay.test"}, request));
  std::set<uint32_t> reported;
  for (uint32_t i = 0; i < kMessages; ++i) {
    auto frame = mta_->await<msg::DeliveryReport>(*queue_, std::chrono::seconds(20));
    ASSERT_TRUE(frame) << reported.size() << " of " << kMessages << " reported";
    reported.insert(frame->request_id);
    ASSERT_EQ(frame->message.results.size(), 1u);
    EXPECT_EQ(frame->message.results[0].outcome, msg::DeliveryOutcome::delivered)
        << frame->message.results[0].detail;
  }
  EXPECT_EQ(reported.size(), kMessages);
  EXPECT_EQ(sink.seen().size(), kMessages);
  EXPECT_GE(sink.connections(), static_cast<int>(kMessages));  // one message a connection
}

// Address literals (RFC 5321 4.1.3) are their host, with nothing asked of lookup: one of this
// server's own addresses is a loop, a malformed one bounces. (A report at all shows lookup was
// not waited for: nothing here answers it.)
TEST_F(MtaProcessTest, AddressLiteralsNeedNoLookup) {
  start({}, {"127.0.0.1:25"});
  ASSERT_TRUE(deliver(
      {"a@[127.0.0.1]", "b@[300.1.2.3]", "c@[IPv6:127.0.0.1]", "d@[::1]", "e@[IPv6:::1"}, 5));
  auto results = report(5);
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[10].dsn, "5.4.6") << results[10].detail;
  for (uint32_t bad = 11; bad <= 14; ++bad) {
    EXPECT_EQ(results[bad].outcome, msg::DeliveryOutcome::permanent_failure) << bad;
    EXPECT_EQ(results[bad].dsn, "5.1.2") << bad << ": " << results[bad].detail;
  }
  EXPECT_EQ(lookup_->pending(), 0u);
}

// A route's server named by host name is asked of lookup (addresses only, no MX).
TEST_F(MtaProcessTest, RouteHostNamesAreAskedOfLookup) {
  Sink sink;
  start({{.match = {"relay.test"},
          .via = {{.scheme = mail::RelayScheme::smtp,
                   .host = "sink.test",
                   .literal = false,
                   .port = sink.port()}},
          .auth = ""}});
  ASSERT_TRUE(deliver({"a@relay.test"}, 5));
  const auto asked = answer_mx({.status = msg::MxStatus::ok,
                                .implicit = true,
                                .hosts = {{0, "sink.test", {"127.0.0.1"}}},
                                .error = ""});
  ASSERT_TRUE(asked);
  EXPECT_EQ(asked->domain, "sink.test");
  EXPECT_TRUE(asked->host);
  auto results = report(5);
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::delivered) << results[10].detail;
  EXPECT_EQ(results[10].remote_mta, "sink.test[127.0.0.1]:" + std::to_string(sink.port()));
}

// A connection shared by address carries another destination's mail under that destination's
// name for the server: the log's relay= and a DSN's Remote-MTA name the host it asked for.
TEST_F(MtaProcessTest, ASharedConnectionNamesTheServerAsEachDestinationKnowsIt) {
  Sink sink;
  auto named = [&](const std::string& host) {
    return mail::RelayHop{
        .scheme = mail::RelayScheme::smtp, .host = host, .literal = false, .port = sink.port()};
  };
  start({{.match = {"a.test"}, .via = {named("one.test")}, .auth = ""},
         {.match = {"b.test"}, .via = {named("two.test")}, .auth = ""}});
  const std::string port = std::to_string(sink.port());
  for (const auto& [domain, host] : {std::pair{"a.test", "one.test"}, {"b.test", "two.test"}}) {
    ASSERT_TRUE(deliver({std::string("x@") + domain}, 6));
    ASSERT_TRUE(answer_mx({.status = msg::MxStatus::ok,
                           .implicit = true,
                           .hosts = {{0, host, {"127.0.0.1"}}},
                           .error = ""}));
    auto results = report(6);
    EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::delivered) << results[10].detail;
    EXPECT_EQ(results[10].remote_mta, std::string(host) + "[127.0.0.1]:" + port);
  }
  EXPECT_EQ(sink.connections(), 1);
}

// Too many Received: headers bounce 5.4.6 before any connection.
TEST_F(MtaProcessTest, TooManyHopsBounce) {
  Sink sink;
  start({{.match = {"relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  std::string looped;
  for (int i = 0; i < 101; ++i) looped += "Received: from hop" + std::to_string(i) + "\r\n";
  ASSERT_TRUE(deliver({"a@relay.test"}, 6, looped + "\r\nbody\r\n"));
  auto results = report(6);
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::permanent_failure);
  EXPECT_EQ(results[10].dsn, "5.4.6");
  EXPECT_EQ(sink.connections(), 0);
}

// SIZE over the server's limit: 5.3.4 without sending; SMTPUTF8 not offered: 5.6.7. DSN
// parameters go to a server that offers DSN.
TEST_F(MtaProcessTest, CapabilitiesDecideWhatIsSent) {
  Sink sink;
  start({{.match = {"relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  Envelope big;
  ASSERT_TRUE(deliver({"a@relay.test"}, 11, std::string(1000001, 'x'), big));
  EXPECT_EQ(report(11)[10].dsn, "5.3.4");
  Envelope utf8;
  utf8.smtputf8 = true;
  ASSERT_TRUE(deliver({"a@relay.test"}, 12, kMessage, utf8));
  EXPECT_EQ(report(12)[10].dsn, "5.6.7");
  EXPECT_TRUE(sink.seen().empty());

  Envelope dsn;
  dsn.ret = DsnRet::headers;
  dsn.envid = "id+1 x";
  dsn.body_8bit = true;
  files_.emplace_back(kMessage);
  dsn.id = "0123456789abcdef";
  dsn.sender = "bob@example.org";
  dsn.size = kMessage.size();
  msg::DeliverRemote job{.envelope = dsn, .recipients = {}};
  job.recipients.push_back({.index = 0,
                            .address = "a@relay.test",
                            .orcpt_type = "rfc822",
                            .orcpt = "a+b@example.org",
                            .notify = {.never = false, .success = true, .failure = true}});
  ASSERT_TRUE(queue_->send(job, 13, UniqueFd(dup(files_.back().data().fd))));
  EXPECT_EQ(report(13)[0].outcome, msg::DeliveryOutcome::delivered);
  const auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].mail, "MAIL FROM:<bob@example.org> SIZE=" + std::to_string(kMessage.size()) +
                              " BODY=8BITMIME RET=HDRS ENVID=id+2B1+20x");
  ASSERT_EQ(seen[0].rcpts.size(), 1u);
  EXPECT_EQ(seen[0].rcpts[0],
            "RCPT TO:<a@relay.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.org");
}

// Under a global cap of one connection, a destination that needs one closes another's idle
// cached connection and goes next.
TEST_F(MtaProcessTest, TheGlobalCapClosesAnIdleConnectionForAnotherDestination) {
  Sink first;
  Sink second;
  start({{.match = {"a.test"}, .via = {hop(first.port())}, .auth = ""},
         {.match = {"b.test"}, .via = {hop(second.port())}, .auth = ""}},
        {}, 20, 1);
  ASSERT_TRUE(deliver({"x@a.test"}, 1));
  EXPECT_EQ(report(1)[10].outcome, msg::DeliveryOutcome::delivered);
  ASSERT_TRUE(deliver({"y@b.test"}, 2));
  EXPECT_EQ(report(2)[10].outcome, msg::DeliveryOutcome::delivered);
  ASSERT_TRUE(deliver({"z@a.test"}, 3));
  EXPECT_EQ(report(3)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(first.connections(), 2);
  EXPECT_EQ(second.connections(), 1);
}

// Under the global cap, destinations that wait for room and go to the same server take the
// connection another destination leaves idle, as it is: it was once closed for them, and each
// opened another (a campaign to many domains at one provider spent its time connecting).
TEST_F(MtaProcessTest, DestinationsWaitingUnderTheCapTakeAnIdleConnectionToTheirServer) {
  Sink sink;
  start({{.match = {"a.test"}, .via = {hop(sink.port())}, .auth = ""},
         {.match = {"b.test"}, .via = {hop(sink.port())}, .auth = ""},
         {.match = {"c.test"}, .via = {hop(sink.port())}, .auth = ""}},
        {}, 20, 1);
  ASSERT_TRUE(deliver({"x@a.test"}, 1));
  ASSERT_TRUE(deliver({"y@b.test"}, 2));
  ASSERT_TRUE(deliver({"z@c.test"}, 3));
  EXPECT_EQ(delivered_requests(*mta_, *queue_, 3), (std::set<uint32_t>{1, 2, 3}));
  EXPECT_EQ(sink.seen().size(), 3u);
  EXPECT_EQ(sink.connections(), 1);
}

// A server that closes the connection after each message: the next message finds the cached
// connection gone and opens another, without a deferral.
TEST_F(MtaProcessTest, AConnectionTheServerClosedIsNotUsed) {
  TestServer server([](Conn& c) {
    c.send("220 once.test ESMTP\r\n");
    if (c.line().empty()) return;
    c.send("250-once.test\r\n250 PIPELINING\r\n");
    if (!c.line().starts_with("MAIL")) return;
    while (c.line().starts_with("RCPT")) {
    }
    c.send("250 ok\r\n250 ok\r\n354 go\r\n");
    if (!c.data()) return;
    c.send("250 queued\r\n");
  });
  const uint16_t port =
      ntohs(reinterpret_cast<const sockaddr_in&>(server.endpoint().inet->storage).sin_port);
  start({{.match = {"once.test"}, .via = {hop(port)}, .auth = ""}});
  for (uint32_t request = 1; request <= 3; ++request) {
    ASSERT_TRUE(deliver({"x@once.test"}, request));
    const auto results = report(request);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results.at(10).outcome, msg::DeliveryOutcome::delivered) << results.at(10).detail;
  }
  EXPECT_EQ(server.connections(), 3);
}

// Postfix's smtp-sink as the peer of a `routes:` entry: every recipient of two domains in one
// transaction, and a second message over the same connection.
// A server that cannot be reached is left alone for a while: the destination's other servers
// go first, and a destination whose servers are all down defers what comes at once, with the
// time until one is due again, without trying (smtpctl show hosts says so).
TEST_F(MtaProcessTest, AServerThatIsDownIsLeftAlone) {
  Sink sink;
  const uint16_t dead = refused_port();
  start({{.match = {"dead.test"}, .via = {hop(dead)}, .auth = ""},
         {.match = {"relay.test"}, .via = {hop(dead), hop(sink.port())}, .auth = ""}});
  auto show_hosts = [&](uint32_t request) {
    EXPECT_TRUE(control_->send(msg::CtlShowRelays{.view = msg::RelayView::hosts}, request));
    auto shown = mta_->await<msg::CtlResult>(*control_);
    return shown ? shown->message.text : std::string("(no answer)");
  };
  ASSERT_TRUE(deliver({"a@dead.test"}, 1));
  auto first = report(1)[10];
  EXPECT_EQ(first.outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_NE(first.detail.find("cannot connect to 127.0.0.1:" + std::to_string(dead)),
            std::string::npos)
      << first.detail;
  const std::string server = "127.0.0.1[127.0.0.1]:" + std::to_string(dead);
  std::string hosts = show_hosts(40);
  EXPECT_NE(hosts.find(server + ": 0 connections (0 ready, 0 idle), 0 messages; down for "),
            std::string::npos)
      << hosts;
  EXPECT_NE(hosts.find("s more after 1 failures: cannot connect"), std::string::npos) << hosts;
  // Down: deferred at once, told when to come back.
  ASSERT_TRUE(deliver({"b@dead.test"}, 2));
  auto second = report(2)[10];
  EXPECT_EQ(second.outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(second.dsn, "4.4.1");
  EXPECT_NE(second.detail.find("every server is down (" + server + ": cannot connect"),
            std::string::npos)
      << second.detail;
  EXPECT_GE(second.retry_after, 1u);
  EXPECT_LE(second.retry_after, 10u);
  // Another destination with the same server first goes to its other server, and the dead one
  // is not tried (still one failure).
  ASSERT_TRUE(deliver({"c@relay.test"}, 3));
  EXPECT_EQ(report(3)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(sink.seen().size(), 1u);
  hosts = show_hosts(41);
  EXPECT_NE(hosts.find("after 1 failures"), std::string::npos) << hosts;
  EXPECT_NE(hosts.find("127.0.0.1[127.0.0.1]:" + std::to_string(sink.port()) +
                       ": 1 connections (1 ready, 1 idle), 1 messages\n"),
            std::string::npos)
      << hosts;
}

// TLS required and not to be had here (verify before the CA file came): the mail waits with
// the reason, 4.7.5, and the server is not taken for down.
TEST_F(MtaProcessTest, VerifyWithoutCaCertificatesSaysWhy) {
  Sink sink;
  start({{.match = {"relay.test"},
          .via = {hop(sink.port())},
          .auth = "",
          .tls = mail::TlsPolicy::verify}});
  ASSERT_TRUE(deliver({"a@relay.test"}, 1));
  auto r = report(1)[10];
  EXPECT_EQ(r.outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(r.dsn, "4.7.5");
  EXPECT_NE(r.detail.find("TLS is required (policy verify) but cannot be had: no CA certificates "
                          "yet"),
            std::string::npos)
      << r.detail;
  EXPECT_EQ(sink.connections(), 0);
  ASSERT_TRUE(control_->send(msg::CtlShowRelays{.view = msg::RelayView::hosts}, 40));
  auto shown = mta_->await<msg::CtlResult>(*control_);
  ASSERT_TRUE(shown);
  EXPECT_EQ(shown->message.text.find("down"), std::string::npos) << shown->message.text;
}

// smtpctl show routes: each route, its servers and their TLS policies, the login (never the
// password), and how the rest goes.
TEST_F(MtaProcessTest, ShowRoutesListsTheConfiguredRoutes) {
  mail::RelayHop tls = hop(2525);
  tls.scheme = mail::RelayScheme::smtp_tls;
  Settings settings{
      .hostname = "mta.test",
      .routes = {{.match = {"relay.test", "*.relay.test"},
                  .via = {hop(2613), tls},
                  .auth = "/etc/postern/relay-auth",
                  .tls = std::nullopt,
                  .auth_login = "dave",
                  .auth_password = "s3cret"},
                 {.match = {"mx.test"}, .via = {}, .auth = "", .tls = mail::TlsPolicy::verify}}};
  start(settings);
  ASSERT_TRUE(control_->send(msg::CtlShowRelays{.view = msg::RelayView::routes}, 40));
  auto shown = mta_->await<msg::CtlResult>(*control_);
  ASSERT_TRUE(shown);
  EXPECT_EQ(shown->message.text,
            "route 0: relay.test, *.relay.test -> smtp://127.0.0.1:2613 (tls opportunistic), "
            "smtp+tls://127.0.0.1:2525 (tls encrypt), auth as dave (from "
            "/etc/postern/relay-auth)\n"
            "route 1: mx.test -> by MX, tls verify\n"
            "other remote mail: by MX, tls opportunistic\n");
  EXPECT_EQ(shown->message.text.find("s3cret"), std::string::npos);
}

TEST_F(MtaProcessTest, RelaysThroughARouteToPostfixSmtpSink) {
  PostfixSink sink;
  // The real peer is the point of this test: without it the test fails, it is not skipped.
  ASSERT_TRUE(sink.available()) << "Postfix's smtp-sink cannot be had (tests/postfix_tools.py)";
  start({{.match = {"relay.test", "*.relay.test"}, .via = {hop(sink.port())}, .auth = ""}});
  ASSERT_TRUE(deliver({"a@r0.relay.test", "b@r1.relay.test", "c@relay.test"}, 21));
  auto results = report(21);
  ASSERT_EQ(results.size(), 3u);
  for (const auto& [index, r] : results) {
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << index << ": " << r.detail;
    EXPECT_EQ(r.remote_mta, "127.0.0.1[127.0.0.1]:" + std::to_string(sink.port()));
  }
  ASSERT_TRUE(deliver({"d@r2.relay.test"}, 22));
  EXPECT_EQ(report(22)[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_TRUE(mta_->run_until([&] { return sink.dumped() == 2; }));
  EXPECT_EQ(sink.dumped(), 2u);  // one transaction a message
}

Route route_to(const std::string& domain, uint16_t port, std::vector<std::string> source = {}) {
  Route r{.match = {domain}, .via = {hop(port)}, .auth = ""};
  r.source = std::move(source);
  return r;
}

// Three routes to one server: a.test with a source of its own (which wins over its shaping
// rule's), b.test with its shaping rule's, c.test with relay_source's IPv4 address (the server
// is IPv4). An idle connection from one address never carries the next destination's mail.
TEST_F(MtaProcessTest, EachDestinationLeavesFromItsSourceAddress) {
  Sink sink;
  Settings settings{.hostname = "mta.test"};
  settings.routes = {route_to("a.test", sink.port(), {"127.0.0.2"}),
                     route_to("b.test", sink.port()), route_to("c.test", sink.port())};
  settings.shaping = {{.match = {"a.test", "b.test"}, .source = {"127.0.0.3"}}};
  settings.relay_source = {"::1", "127.0.0.4"};
  start(settings);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"x@a.test", "127.0.0.2"}, {"y@b.test", "127.0.0.3"}, {"z@c.test", "127.0.0.4"}};
  uint32_t request = 1;
  for (const auto& [rcpt, source] : expected) {
    ASSERT_TRUE(deliver({rcpt}, request));
    const auto results = report(request++);
    ASSERT_EQ(results.count(10), 1u);
    EXPECT_EQ(results.at(10).outcome, msg::DeliveryOutcome::delivered) << results.at(10).detail;
    EXPECT_EQ(results.at(10).source, source);
  }
  const auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 3u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].peer, expected[i].second) << i;
    EXPECT_EQ(seen[i].rcpts, std::vector<std::string>{"RCPT TO:<" + expected[i].first + ">"});
  }
  EXPECT_EQ(sink.connections(), 3);
  // The same destination again: its cached connection, from the same address.
  ASSERT_TRUE(deliver({"w@b.test"}, 9));
  EXPECT_EQ(report(9).at(10).source, "127.0.0.3");
  EXPECT_EQ(sink.connections(), 3);
}

// A reload that changes a source address: the connection cached from the old one closes and
// the next message leaves from the new one. Without sources, nothing is bound or reported.
TEST_F(MtaProcessTest, AReloadMovesMailToTheNewSourceAddress) {
  Sink sink;
  Settings settings{.hostname = "mta.test"};
  settings.routes = {route_to("a.test", sink.port())};
  start(settings);
  ASSERT_TRUE(deliver({"x@a.test"}, 1));
  EXPECT_EQ(report(1).at(10).source, "");
  settings.relay_source = {"127.0.0.5"};
  ASSERT_TRUE(mta_->parent().send(settings));
  ASSERT_TRUE(deliver({"y@a.test"}, 2));
  EXPECT_EQ(report(2).at(10).source, "127.0.0.5");
  const auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].peer, "127.0.0.1");
  EXPECT_EQ(seen[1].peer, "127.0.0.5");
  EXPECT_EQ(sink.connections(), 2);
}

// An address this machine does not have (TEST-NET-1): nothing is sent, the recipient is
// deferred saying why, and the mta lives on for the next message.
TEST_F(MtaProcessTest, ASourceAddressThatCannotBeBoundDefers) {
  Sink sink;
  Settings settings{.hostname = "mta.test"};
  settings.routes = {route_to("a.test", sink.port(), {"192.0.2.1"}),
                     route_to("b.test", sink.port())};
  start(settings);
  ASSERT_TRUE(deliver({"x@a.test"}, 1));
  const auto results = report(1);
  ASSERT_EQ(results.count(10), 1u);
  EXPECT_EQ(results.at(10).outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results.at(10).detail,
            "cannot bind source address 192.0.2.1: Cannot assign requested address");
  EXPECT_EQ(sink.connections(), 0);
  ASSERT_TRUE(deliver({"y@b.test"}, 2));
  EXPECT_EQ(report(2).at(10).outcome, msg::DeliveryOutcome::delivered);
}

}  // namespace
}  // namespace postern::mta
