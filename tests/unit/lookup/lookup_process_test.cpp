// Tests for lookup/lookup_process.cpp: a real LookupProcess in a forked child
// (process_harness.hpp), the test playing the parent, smtp, the queue and mda over socketpairs.
// RCPT checks against a users table file the parent hands over, a bad table refused whole with
// the good one kept, routes for mda, and the relay check resting on what lookup verified
// itself: the session's own TCP connection and its AUTH against a credentials table.
#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "lookup/lookup_process.hpp"
#include "tests/unit/support/process_harness.hpp"

namespace postern::lookup {
namespace {

using test::PeerEnd;
using test::ProcessUnderTest;

std::string sha512_hash(const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$6$", 5000, nullptr, 0, setting, sizeof setting) == nullptr) return "";
  const auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(password.c_str(), setting, data.get(), sizeof *data);
  return out == nullptr ? "" : out;
}

// An accepted loopback TCP connection, as smtp hands it to lookup, and the client's end.
struct Connection {
  UniqueFd accepted;
  UniqueFd client;
};

Connection loopback_connection() {
  Connection c;
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (!listener || bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener.get(), 1) != 0 ||
      getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return c;
  c.client = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(c.client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return c;
  c.accepted = UniqueFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return c;
}

class LookupProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    users_path_ = dir_.path() + "/users";
    credentials_path_ = dir_.path() + "/credentials";
    std::ofstream(users_path_) << "alice\nbob\n";
    std::ofstream(credentials_path_) << "alice:" << sha512_hash("correct horse") << "\n"
                                     << "dave@virt.test:" << sha512_hash("battery") << "\n";
    lookup_.emplace(Role::lookup, [](ChildRuntime& runtime) {
      LookupProcess lookup(runtime);
      return runtime.run();
    });
    Domain domain;
    domain.name = "example.org";
    domain.users_table = users_path_;
    domain.maildir = dir_.path() + "/%u/Maildir";
    config_.domains = {domain};
    // No address is trusted and none is throttled, unlike the defaults of smtpd.yaml.
    config_.trusted_networks.clear();
    config_.connection_rate = 0;
    ASSERT_TRUE(lookup_->parent().send(config_));
    ASSERT_TRUE(send_table(msg::TableKind::users, users_path_));
    ASSERT_TRUE(send_table(msg::TableKind::credentials, credentials_path_));
    smtp_ = &lookup_->connect(Role::smtp);
    queue_ = &lookup_->connect(Role::queue);
    mda_ = &lookup_->connect(Role::mda);
    ASSERT_TRUE(lookup_->start());
  }

  bool send_table(msg::TableKind kind, const std::string& path, uint32_t request = 0) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return lookup_->parent().send(msg::TableFile{.kind = kind, .name = path}, request,
                                  std::move(fd));
  }

  std::optional<msg::RcptDecision> rcpt(const std::string& local, const std::string& domain,
                                        uint64_t session = 0) {
    if (!smtp_->send(msg::RcptCheck{.local_part = local,
                                    .domain = domain,
                                    .literal = false,
                                    .authenticated = session != 0,
                                    .session = session},
                     ++request_))
      return std::nullopt;
    auto verdict = lookup_->await<msg::RcptVerdict>(*smtp_);
    if (!verdict || verdict->request_id != request_) return std::nullopt;
    return verdict->message.decision;
  }

  std::optional<msg::AuthOutcome> auth(const std::string& password, uint64_t session,
                                       const std::string& user = "alice") {
    if (!smtp_->send(msg::AuthCheck{.user = user,
                                    .password = password,
                                    .client_address = "127.0.0.1",
                                    .session = session},
                     ++request_))
      return std::nullopt;
    auto verdict = lookup_->await<msg::AuthVerdict>(*smtp_);
    if (!verdict || verdict->request_id != request_) return std::nullopt;
    return verdict->message.outcome;
  }

  std::optional<msg::RelayVerdict> relay(uint64_t session, const std::string& auth_user,
                                         const std::string& client = "127.0.0.1",
                                         std::vector<std::string> domains = {"remote.example"},
                                         const std::string& sender = "") {
    if (!queue_->send(msg::RelayCheck{.session = session,
                                      .client_address = client,
                                      .listener = "smtp",
                                      .auth_user = auth_user,
                                      .sender = sender,
                                      .domains = std::move(domains)},
                      ++request_))
      return std::nullopt;
    auto verdict = lookup_->await<msg::RelayVerdict>(*queue_);
    if (!verdict || verdict->request_id != request_) return std::nullopt;
    return verdict->message;
  }

  std::optional<msg::SenderVerdict> sender(uint64_t session, const std::string& address) {
    if (!smtp_->send(msg::SenderCheck{.session = session, .sender = address}, ++request_))
      return std::nullopt;
    auto verdict = lookup_->await<msg::SenderVerdict>(*smtp_);
    if (!verdict || verdict->request_id != request_) return std::nullopt;
    return verdict->message;
  }
  bool allowed_sender(uint64_t session, const std::string& address) {
    const auto verdict = sender(session, address);
    return verdict && verdict->allowed;
  }

  // A new configuration, in force once this returns: a table asked for with a request id
  // after it on the same channel is answered only when the configuration was taken (the
  // questions that follow come on other channels, which lookup may read first).
  bool reconfigure() {
    if (!lookup_->parent().send(config_) || !send_table(msg::TableKind::users, users_path_, 990))
      return false;
    auto loaded = lookup_->await<msg::TableLoaded>(lookup_->parent());
    return loaded && loaded->request_id == 990;
  }

  // A session lookup registers from a real loopback connection (client 127.0.0.1).
  Connection open_session(uint64_t id) {
    Connection c = loopback_connection();
    UniqueFd accepted = std::move(c.accepted);
    if (!smtp_->send(msg::SessionOpen{.session = id, .listener = "smtp"}, 0, std::move(accepted)))
      ADD_FAILURE() << "cannot open session";
    return c;
  }

  Settings config_;
  test::TempDir dir_;
  std::string users_path_;
  std::string credentials_path_;
  std::optional<ProcessUnderTest> lookup_;
  PeerEnd* smtp_ = nullptr;
  PeerEnd* queue_ = nullptr;
  PeerEnd* mda_ = nullptr;
  uint32_t request_ = 0;
};

TEST_F(LookupProcessTest, RcptChecksFollowTheUsersTable) {
  EXPECT_EQ(rcpt("alice", "example.org"), msg::RcptDecision::local);
  EXPECT_EQ(rcpt("zed", "example.org"), msg::RcptDecision::unknown_user);
  EXPECT_EQ(rcpt("alice%elsewhere", "example.org"), msg::RcptDecision::unknown_user);
  // Elsewhere, smtp's claim of authentication counts for nothing without a verified session.
  EXPECT_EQ(rcpt("eve", "remote.example"), msg::RcptDecision::relay_denied);
}

// A table with an error is refused whole (the parent hears why, by line) and the one in use
// stays; a good one replaces it.
TEST_F(LookupProcessTest, ABadTableIsRefusedAndTheOldOneKept) {
  std::ofstream(users_path_, std::ios::trunc) << "carol\n@bad\n";
  ASSERT_TRUE(send_table(msg::TableKind::users, users_path_, 900));
  auto loaded = lookup_->await<msg::TableLoaded>(lookup_->parent());
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->request_id, 900u);
  EXPECT_FALSE(loaded->message.ok);
  EXPECT_NE(loaded->message.error.find(users_path_ + ":2"), std::string::npos)
      << loaded->message.error;
  EXPECT_EQ(rcpt("alice", "example.org"), msg::RcptDecision::local);
  EXPECT_EQ(rcpt("carol", "example.org"), msg::RcptDecision::unknown_user);

  std::ofstream(users_path_, std::ios::trunc) << "carol\n";
  ASSERT_TRUE(send_table(msg::TableKind::users, users_path_, 901));
  loaded = lookup_->await<msg::TableLoaded>(lookup_->parent());
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(loaded->message.ok) << loaded->message.error;
  EXPECT_EQ(rcpt("carol", "example.org"), msg::RcptDecision::local);
  EXPECT_EQ(rcpt("alice", "example.org"), msg::RcptDecision::unknown_user);
}

TEST_F(LookupProcessTest, RoutesForMda) {
  ASSERT_TRUE(
      mda_->send(msg::ResolveLocal{.addresses = {"alice@example.org", "zed@example.org"}}, 5));
  auto routes = lookup_->await<msg::LocalRoutes>(*mda_);
  ASSERT_TRUE(routes);
  EXPECT_EQ(routes->request_id, 5u);
  EXPECT_TRUE(routes->message.last);
  ASSERT_EQ(routes->message.routes.size(), 2u);
  const msg::LocalRoute& alice = routes->message.routes[0];
  ASSERT_EQ(alice.status, msg::RouteStatus::ok) << alice.error;
  ASSERT_EQ(alice.destinations.size(), 1u);
  EXPECT_EQ(alice.destinations[0].method, msg::DeliveryMethod::maildir);
  EXPECT_EQ(alice.destinations[0].target, dir_.path() + "/alice/Maildir");
  EXPECT_EQ(alice.destinations[0].mailbox, "alice@example.org");
  EXPECT_EQ(routes->message.routes[1].status, msg::RouteStatus::unknown_user);
}

// Relaying needs a session lookup saw itself (its TCP connection) that authenticated here as
// the user the envelope names; smtp's word is never enough.
TEST_F(LookupProcessTest, RelayRestsOnWhatLookupVerified) {
  Connection c = loopback_connection();
  ASSERT_TRUE(c.accepted);
  ASSERT_TRUE(
      smtp_->send(msg::SessionOpen{.session = 7, .listener = "smtp"}, 0, std::move(c.accepted)));
  // Not authenticated yet.
  auto verdict = relay(7, "");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  EXPECT_EQ(rcpt("eve", "remote.example", 7), msg::RcptDecision::relay_denied);

  EXPECT_EQ(auth("wrong", 7), msg::AuthOutcome::rejected);
  EXPECT_EQ(auth("correct horse", 7), msg::AuthOutcome::accepted);
  EXPECT_EQ(rcpt("eve", "remote.example", 7), msg::RcptDecision::relay);
  verdict = relay(7, "alice");
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->allowed) << verdict->reason;
  // The envelope must say what lookup saw.
  verdict = relay(7, "alice", "192.0.2.9");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  verdict = relay(7, "mallory");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  // A session never opened (or closed) cannot relay.
  verdict = relay(8, "alice");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  ASSERT_TRUE(smtp_->send(msg::SessionClose{.session = 7}));
  // (Asked on smtp's channel, so the close is read before the queue's question.) A session
  // lookup does not know, whatever smtp claims: the client may try again.
  EXPECT_EQ(rcpt("eve", "remote.example", 7), msg::RcptDecision::temporary);
  verdict = relay(7, "alice");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
}

// relay_domains: anyone may send there ("*." covers the names below only); the queue's
// question names every remote domain and each must be allowed.
TEST_F(LookupProcessTest, RelayDomainsAreOpenToAnyClient) {
  config_.relay_domains = {"relay.test", "*.sub.test"};
  ASSERT_TRUE(reconfigure());
  Connection c = open_session(7);
  EXPECT_EQ(rcpt("x", "relay.test", 7), msg::RcptDecision::relay);
  EXPECT_EQ(rcpt("x", "a.sub.test", 7), msg::RcptDecision::relay);
  EXPECT_EQ(rcpt("x", "b.a.sub.test", 7), msg::RcptDecision::relay);
  EXPECT_EQ(rcpt("x", "sub.test", 7), msg::RcptDecision::relay_denied);
  EXPECT_EQ(rcpt("x", "xsub.test", 7), msg::RcptDecision::relay_denied);
  EXPECT_EQ(rcpt("x", "relay.test.evil", 7), msg::RcptDecision::relay_denied);
  EXPECT_EQ(rcpt("x", "remote.example", 7), msg::RcptDecision::relay_denied);
  auto verdict = relay(7, "", "127.0.0.1", {"relay.test", "a.sub.test"});
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->allowed) << verdict->reason;
  // A relay domain first does not carry another one through.
  verdict = relay(7, "", "127.0.0.1", {"relay.test", "remote.example"});
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  EXPECT_EQ(verdict->reason, "no relaying to remote.example for this session");
  // An address literal is never a relay domain.
  verdict = relay(7, "", "127.0.0.1", {"[127.0.0.1]"});
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
}

// A trusted network relays only when trusted_networks_relay says so.
TEST_F(LookupProcessTest, TrustedNetworksRelayOnlyWhenAllowed) {
  config_.trusted_networks = {*inet::parse_network("127.0.0.0/8")};
  ASSERT_TRUE(reconfigure());
  Connection c = open_session(7);
  EXPECT_EQ(rcpt("x", "remote.example", 7), msg::RcptDecision::relay_denied);
  auto verdict = relay(7, "");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  config_.trusted_networks_relay = true;
  ASSERT_TRUE(reconfigure());
  EXPECT_EQ(rcpt("x", "remote.example", 7), msg::RcptDecision::relay);
  verdict = relay(7, "", "127.0.0.1", {"remote.example", "[192.0.2.1]"});
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->allowed) << verdict->reason;
  // The permission is the network's: another client address in the envelope gets nothing.
  verdict = relay(7, "", "192.0.2.9");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  config_.trusted_networks = {*inet::parse_network("192.0.2.0/24")};
  ASSERT_TRUE(reconfigure());
  EXPECT_EQ(rcpt("x", "remote.example", 7), msg::RcptDecision::relay_denied);
}

// An authenticated user sends as its own address (a login that is an address), as
// login@<local domain> (a bare login), or as what the senders table grants; the relay check
// asks the same.
TEST_F(LookupProcessTest, AuthenticatedUsersSendOnlyAsTheirOwnAddresses) {
  Connection d = open_session(7);
  Connection a = open_session(8);
  // Unknown until authenticated.
  auto verdict = sender(7, "dave@virt.test");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  ASSERT_EQ(auth("battery", 7, "dave@virt.test"), msg::AuthOutcome::accepted);
  ASSERT_EQ(auth("correct horse", 8), msg::AuthOutcome::accepted);
  EXPECT_TRUE(allowed_sender(7, "dave@virt.test"));
  EXPECT_TRUE(allowed_sender(7, "Dave@VIRT.test"));
  EXPECT_TRUE(allowed_sender(7, ""));  // <>
  verdict = sender(7, "alice@example.org");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
  EXPECT_EQ(verdict->reason, "user dave@virt.test does not own <alice@example.org>");
  EXPECT_FALSE(allowed_sender(7, "sales@virt.test"));
  EXPECT_TRUE(allowed_sender(8, "alice@example.org"));
  EXPECT_FALSE(allowed_sender(8, "alice@virt.test"));
  EXPECT_FALSE(allowed_sender(8, "dave@virt.test"));
  auto relayed = relay(7, "dave@virt.test", "127.0.0.1", {"remote.example"}, "alice@example.org");
  ASSERT_TRUE(relayed);
  EXPECT_FALSE(relayed->allowed);
  EXPECT_EQ(relayed->reason, "user dave@virt.test does not own <alice@example.org>");
  relayed = relay(7, "dave@virt.test", "127.0.0.1", {"remote.example"}, "dave@virt.test");
  ASSERT_TRUE(relayed);
  EXPECT_TRUE(relayed->allowed) << relayed->reason;

  // The senders table adds addresses and whole domains; a bad one is refused whole.
  const std::string senders = dir_.path() + "/senders";
  config_.senders = senders;
  ASSERT_TRUE(reconfigure());
  std::ofstream(senders) << "# login addresses\nDAVE@virt.test sales@virt.test, @team.test\n";
  ASSERT_TRUE(send_table(msg::TableKind::senders, senders, 902));
  auto loaded = lookup_->await<msg::TableLoaded>(lookup_->parent());
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(loaded->message.ok) << loaded->message.error;
  EXPECT_TRUE(allowed_sender(7, "sales@virt.test"));
  EXPECT_TRUE(allowed_sender(7, "anyone@team.test"));
  EXPECT_TRUE(allowed_sender(7, "dave@virt.test"));
  EXPECT_FALSE(allowed_sender(7, "anyone@sub.team.test"));
  EXPECT_FALSE(allowed_sender(7, "alice@example.org"));
  EXPECT_FALSE(allowed_sender(8, "sales@virt.test"));
  std::ofstream(senders, std::ios::trunc) << "dave@virt.test not-an-address\n";
  ASSERT_TRUE(send_table(msg::TableKind::senders, senders, 903));
  loaded = lookup_->await<msg::TableLoaded>(lookup_->parent());
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(loaded->message.ok);
  EXPECT_NE(loaded->message.error.find(senders + ":1"), std::string::npos) << loaded->message.error;
  EXPECT_TRUE(allowed_sender(7, "sales@virt.test"));

  // Off by explicit choice: any sender.
  config_.senders.reset();
  config_.sender_rule = SenderRule::off;
  ASSERT_TRUE(reconfigure());
  EXPECT_TRUE(allowed_sender(7, "alice@example.org"));
  // Back on without the table: its grants are gone.
  config_.sender_rule = SenderRule::own;
  ASSERT_TRUE(reconfigure());
  EXPECT_FALSE(allowed_sender(7, "sales@virt.test"));
}

// A descriptor that is not a TCP connection registers no session.
TEST_F(LookupProcessTest, ASessionOnANonTcpDescriptorCannotRelay) {
  UniqueFd a;
  UniqueFd b;
  ASSERT_TRUE(ipc::make_socketpair(a, b));
  ASSERT_TRUE(smtp_->send(msg::SessionOpen{.session = 9, .listener = "smtp"}, 0, std::move(a)));
  EXPECT_EQ(auth("correct horse", 9), msg::AuthOutcome::accepted);
  auto verdict = relay(9, "alice");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
}

// A new smtp numbers its sessions afresh: nothing vouched for the old one carries over.
TEST_F(LookupProcessTest, SmtpLostForgetsItsSessions) {
  Connection c = loopback_connection();
  ASSERT_TRUE(c.accepted);
  ASSERT_TRUE(
      smtp_->send(msg::SessionOpen{.session = 7, .listener = "smtp"}, 0, std::move(c.accepted)));
  EXPECT_EQ(auth("correct horse", 7), msg::AuthOutcome::accepted);
  smtp_->close();
  smtp_ = &lookup_->connect(Role::smtp);
  ASSERT_TRUE(lookup_->run_until([&] { return smtp_->has<msg::PeerHello>(); }));
  auto verdict = relay(7, "alice");
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->allowed);
}

}  // namespace
}  // namespace postern::lookup
