// The local logic of smtpctl's queue views (queue/views.cpp): which messages a filter selects,
// the shape's age columns, times in words and pages that fit frames. The views against a real
// queue are tested in tests/integration/test_smtpctl.py.
#include "queue/views.hpp"

#include <gtest/gtest.h>

namespace postern::queue {
namespace {

constexpr int64_t kNow = 1'800'000'000;

Envelope message(const std::string& sender,
                 std::vector<std::pair<std::string, RecipientState>> rcpts, int64_t age) {
  Envelope e;
  e.id = "0123456789abcdef";
  e.arrival = kNow - age;
  e.sender = sender;
  for (auto& [address, state] : rcpts)
    e.recipients.push_back(
        Recipient{.address = address, .orcpt_type = "", .orcpt = "", .notify = {}, .state = state});
  return e;
}

TEST(QueueViews, Filters) {
  const Envelope e = message(
      "Bob@Example.org",
      {{"alice@one.test", RecipientState::delivered}, {"carol@Two.test", RecipientState::pending}},
      3600);
  msg::CtlShowQueue q;
  EXPECT_TRUE(matches(e, q, kNow));
  q.sender = "bob@example";  // contains, ASCII case ignored
  EXPECT_TRUE(matches(e, q, kNow));
  q.sender = "mallory";
  EXPECT_FALSE(matches(e, q, kNow));
  q = {};
  q.domain = "two.test";
  EXPECT_TRUE(matches(e, q, kNow));
  q.domain = "wo.test";  // a domain is the whole domain
  EXPECT_FALSE(matches(e, q, kNow));
  // Recipient, domain and state hold for one and the same recipient.
  q = {};
  q.domain = "one.test";
  q.state = msg::StateFilter::pending;
  EXPECT_FALSE(matches(e, q, kNow));
  q.state = msg::StateFilter::delivered;
  EXPECT_TRUE(matches(e, q, kNow));
  q = {};
  q.recipient = "CAROL";
  q.state = msg::StateFilter::failed;
  EXPECT_FALSE(matches(e, q, kNow));
  q.state = msg::StateFilter::any;
  EXPECT_TRUE(matches(e, q, kNow));
}

TEST(QueueViews, AgeFilters) {
  const Envelope e = message("", {{"a@x.test", RecipientState::pending}}, 3600);
  msg::CtlShowQueue q;
  q.older = 3600;  // at least
  EXPECT_TRUE(matches(e, q, kNow));
  q.older = 3601;
  EXPECT_FALSE(matches(e, q, kNow));
  q = {};
  q.newer = 3601;  // less than
  EXPECT_TRUE(matches(e, q, kNow));
  q.newer = 3600;
  EXPECT_FALSE(matches(e, q, kNow));
}

TEST(QueueViews, ShapeColumns) {
  EXPECT_EQ(shape_column(0), 0u);
  EXPECT_EQ(shape_column(-5), 0u);  // a clock set back
  EXPECT_EQ(shape_column(299), 0u);
  EXPECT_EQ(shape_column(300), 1u);
  EXPECT_EQ(shape_column(1280 * 60 - 1), kShapeColumns - 2);
  EXPECT_EQ(shape_column(1280 * 60), kShapeColumns - 1);
  EXPECT_EQ(shape_column(int64_t{1} << 40), kShapeColumns - 1);
}

TEST(QueueViews, TimesInWords) {
  EXPECT_EQ(utc_time(0), "-");
  EXPECT_EQ(utc_time(1'800'000'000), "2027-01-15 08:00:00 UTC");
  EXPECT_EQ(age_text(59), "59s");
  EXPECT_EQ(age_text(600), "10m");
  EXPECT_EQ(age_text(3 * 3600), "3h");
  EXPECT_EQ(age_text(3 * 86400), "3d");
}

TEST(QueueViews, PagesFitFrames) {
  Page page;
  page.append(std::string(msg::kMaxCtlText - 10, 'a'));
  page.append(std::string(20, 'b'));  // does not fit the first piece: a second one
  ASSERT_EQ(page.pieces.size(), 2u);
  EXPECT_EQ(page.pieces[1], std::string(20, 'b'));
  page.append(std::string(2 * msg::kMaxCtlText + 1, 'c'));  // longer than a frame: cut
  for (const std::string& piece : page.pieces) EXPECT_LE(piece.size(), msg::kMaxCtlText);
  EXPECT_EQ(page.bytes, msg::kMaxCtlText - 10 + 20 + 2 * msg::kMaxCtlText + 1);
}

}  // namespace
}  // namespace postern::queue
