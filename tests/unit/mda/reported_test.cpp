// Deliveries reported lately: answered again only for the same message, recipient index and
// address, only when delivered, and forgotten oldest first beyond the bounds.
#include "mda/reported.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

#include <gtest/gtest.h>

namespace postern::mda {
namespace {

using msg::DeliveryOutcome;

msg::DeliveryResult outcome(uint32_t index, DeliveryOutcome o,
                            std::vector<std::string> forward = {}) {
  return {.index = index,
          .outcome = o,
          .dsn = o == DeliveryOutcome::delivered ? "2.0.0" : "4.3.0",
          .detail = "",
          .forward = std::move(forward)};
}

TEST(Reported, AnswersDeliveredRecipientsOfTheSameMessageOnly) {
  Reported reported(10, 100);
  reported.remember("m1", {{.index = 0, .address = "alice@x"}, {.index = 3, .address = "bob@x"}},
                    {outcome(0, DeliveryOutcome::delivered, {"far@elsewhere.example"}),
                     outcome(3, DeliveryOutcome::temporary_failure)});
  const msg::DeliveryResult* alice = reported.find("m1", {.index = 0, .address = "alice@x"});
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->outcome, DeliveryOutcome::delivered);
  // What the queue needs again: the forward it lost with the report.
  EXPECT_EQ(alice->forward, std::vector<std::string>{"far@elsewhere.example"});
  // Deferred: delivered when the queue asks again.
  EXPECT_EQ(reported.find("m1", {.index = 3, .address = "bob@x"}), nullptr);
  // Another message, another index, another address at that index: not the same recipient.
  EXPECT_EQ(reported.find("m2", {.index = 0, .address = "alice@x"}), nullptr);
  EXPECT_EQ(reported.find("m1", {.index = 1, .address = "alice@x"}), nullptr);
  EXPECT_EQ(reported.find("m1", {.index = 0, .address = "carol@x"}), nullptr);
  EXPECT_EQ(reported.recipients(), 1u);
}

TEST(Reported, JobsOfOneMessageAddUp) {
  Reported reported(10, 100);
  reported.remember("m", {{.index = 0, .address = "a@x"}},
                    {outcome(0, DeliveryOutcome::delivered)});
  reported.remember("m", {{.index = 1, .address = "b@x"}},
                    {outcome(1, DeliveryOutcome::delivered)});
  reported.remember("m", {{.index = 1, .address = "b@x"}},
                    {outcome(1, DeliveryOutcome::delivered)});
  EXPECT_EQ(reported.messages(), 1u);
  EXPECT_EQ(reported.recipients(), 2u);
  EXPECT_NE(reported.find("m", {.index = 0, .address = "a@x"}), nullptr);
  EXPECT_NE(reported.find("m", {.index = 1, .address = "b@x"}), nullptr);
}

TEST(Reported, ForgetsTheOldestBeyondItsBounds) {
  Reported reported(3, 5);
  for (int i = 0; i < 4; ++i)
    reported.remember("m" + std::to_string(i), {{.index = 0, .address = "a@x"}},
                      {outcome(0, DeliveryOutcome::delivered)});
  EXPECT_EQ(reported.messages(), 3u);
  EXPECT_EQ(reported.find("m0", {.index = 0, .address = "a@x"}), nullptr);
  EXPECT_NE(reported.find("m3", {.index = 0, .address = "a@x"}), nullptr);
  // A fanout of four recipients pushes out older messages to stay within five recipients.
  std::vector<msg::LocalRecipient> many;
  std::vector<msg::DeliveryResult> outcomes;
  for (uint32_t i = 0; i < 4; ++i) {
    many.push_back({.index = i, .address = "u" + std::to_string(i) + "@x"});
    outcomes.push_back(outcome(i, DeliveryOutcome::delivered));
  }
  reported.remember("big", many, outcomes);
  EXPECT_LE(reported.recipients(), 5u);
  EXPECT_EQ(reported.messages(), 2u);
  EXPECT_NE(reported.find("big", {.index = 3, .address = "u3@x"}), nullptr);
  EXPECT_NE(reported.find("m3", {.index = 0, .address = "a@x"}), nullptr);
  EXPECT_EQ(reported.find("m2", {.index = 0, .address = "a@x"}), nullptr);
}

}  // namespace
}  // namespace postern::mda
