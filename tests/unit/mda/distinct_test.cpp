// Duplicate elimination after alias expansion: each final destination of a job once, shared
// by every recipient whose routes lead there.
#include "mda/distinct.hpp"
#include "mda/api.hpp"

#include <gtest/gtest.h>

namespace postern::mda {
namespace {

using msg::DeliveryMethod;
using msg::Destination;
using msg::LocalRoute;
using msg::RouteStatus;
using Routes = std::vector<std::optional<LocalRoute>>;

Destination maildir(const std::string& path, const std::string& mailbox,
                    const std::string& user = "") {
  return {.method = DeliveryMethod::maildir, .target = path, .user = user, .mailbox = mailbox};
}

LocalRoute ok(std::vector<Destination> destinations) {
  return {.status = RouteStatus::ok, .error = "", .destinations = std::move(destinations)};
}

TEST(DistinctDeliveries, AnAliasOfTheSameMailboxIsDeliveredOnceForBoth) {
  // alice@ and postmaster@ (an alias of alice): one Maildir, two recipients.
  const Routes routes{ok({maildir("/var/mail/alice/Maildir", "alice@localhost")}),
                      ok({maildir("/var/mail/alice/Maildir", "alice@localhost")})};
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].destination.target, "/var/mail/alice/Maildir");
  EXPECT_EQ(deliveries[0].recipients, (std::vector<size_t>{0, 1}));
}

TEST(DistinctDeliveries, DistinctMailboxesStayDistinctInFirstSeenOrder) {
  const Routes routes{
      ok({maildir("/m/bob", "bob@x"), maildir("/m/alice", "alice@x")}),  // a list alias
      ok({maildir("/m/alice", "alice@x")}),
      ok({maildir("/m/carol", "carol@x")}),
  };
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 3u);
  EXPECT_EQ(deliveries[0].destination.target, "/m/bob");
  EXPECT_EQ(deliveries[0].recipients, (std::vector<size_t>{0}));
  EXPECT_EQ(deliveries[1].destination.target, "/m/alice");
  EXPECT_EQ(deliveries[1].recipients, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(deliveries[2].destination.target, "/m/carol");
  EXPECT_EQ(deliveries[2].recipients, (std::vector<size_t>{2}));
}

TEST(DistinctDeliveries, TheKeyIsMethodTargetAndUser) {
  const Routes routes{
      ok({maildir("~/Maildir", "a@x", "alice")}),
      ok({maildir("~/Maildir", "b@x", "bob")}),  // another user's home: not the same place
      ok({{.method = DeliveryMethod::mbox,
           .target = "~/Maildir",
           .user = "alice",
           .mailbox = "a@x"}}),
      ok({{.method = DeliveryMethod::command,
           .target = "/bin/true",
           .user = "alice",
           .mailbox = "a@x"}}),
      ok({{.method = DeliveryMethod::command,
           .target = "/bin/true",
           .user = "alice",
           .mailbox = "other@x"}}),  // the same command as the same user: once
  };
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 4u);
  EXPECT_EQ(deliveries[3].destination.method, DeliveryMethod::command);
  EXPECT_EQ(deliveries[3].recipients, (std::vector<size_t>{3, 4}));
}

TEST(DistinctDeliveries, LmtpMailboxesAreDistinctRecipientsOfOneServer) {
  auto lmtp = [](const std::string& mailbox) {
    return Destination{
        .method = DeliveryMethod::lmtp, .target = "127.0.0.1:24", .user = "", .mailbox = mailbox};
  };
  const Routes routes{ok({lmtp("alice@x")}), ok({lmtp("bob@x")}), ok({lmtp("alice@x")})};
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].recipients, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(deliveries[1].recipients, (std::vector<size_t>{1}));
}

TEST(DistinctDeliveries, ForwardsToOneAddressAreOne) {
  auto forward = [](const std::string& to) {
    return Destination{.method = DeliveryMethod::forward, .target = to, .user = "", .mailbox = ""};
  };
  const Routes routes{ok({forward("x@elsewhere.example")}),
                      ok({forward("x@elsewhere.example"), forward("y@elsewhere.example")})};
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].recipients, (std::vector<size_t>{0, 1}));
}

TEST(DistinctDeliveries, RecipientsWithoutRoutesHaveNoDeliveries) {
  const Routes routes{
      std::nullopt,  // lookup did not answer
      LocalRoute{.status = RouteStatus::unknown_user,
                 .error = "no such user",
                 .destinations = {maildir("/m/alice", "alice@x")}},
      ok({maildir("/m/alice", "alice@x")}),
  };
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].recipients, (std::vector<size_t>{2}));
}

TEST(DistinctDeliveries, AnAliasNamingAMailboxTwiceIsOneRecipientOfIt) {
  const Routes routes{ok({maildir("/m/alice", "alice@x"), maildir("/m/alice", "alice@x")})};
  const auto deliveries = distinct_deliveries(routes);
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].recipients, (std::vector<size_t>{0}));
}

TEST(SameDelivery, IgnoresTheMailboxExceptForLmtp) {
  EXPECT_TRUE(same_delivery(maildir("/m/a", "a@x"), maildir("/m/a", "postmaster@x")));
  EXPECT_FALSE(same_delivery(maildir("/m/a", "a@x"), maildir("/m/a", "a@x", "alice")));
  const Destination a{.method = DeliveryMethod::lmtp, .target = "s", .user = "", .mailbox = "a"};
  Destination b = a;
  b.mailbox = "b";
  EXPECT_FALSE(same_delivery(a, b));
}

}  // namespace
}  // namespace postern::mda
