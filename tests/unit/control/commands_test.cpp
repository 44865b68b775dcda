// smtpctl's command words (control/smtpctl/commands.cpp): each verb's request, the queue's
// filters and ages, and every mistake refused before anything is sent.
#include "control/smtpctl/commands.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::smtpctl {
namespace {

Request parse_ok(const std::vector<std::string>& words, bool json = false) {
  Result<Request> r = parse_command(words, json);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : Request{msg::CtlStop{}};
}

std::string parse_error(const std::vector<std::string>& words, bool json = false) {
  Result<Request> r = parse_command(words, json);
  return r.ok() ? "(accepted)" : r.error().message;
}

TEST(SmtpctlCommands, Ages) {
  EXPECT_EQ(parse_age("90").value(), 90u);
  EXPECT_EQ(parse_age("90s").value(), 90u);
  EXPECT_EQ(parse_age("15m").value(), 900u);
  EXPECT_EQ(parse_age("2h").value(), 7200u);
  EXPECT_EQ(parse_age("3d").value(), 3u * 86400);
  EXPECT_EQ(parse_age("1w").value(), 7u * 86400);
  for (const char* bad : {"", "m", "-1", "1x", "1.5h", "367d", "99999999999999999999"})
    EXPECT_FALSE(parse_age(bad).ok()) << bad;
}

TEST(SmtpctlCommands, QueueFilters) {
  const Request r = parse_ok({"show", "queue", "from", "bob@", "to", "alice", "domain",
                              "example.org", "state", "pending", "older", "1h", "newer", "2d"},
                             true);
  const auto q = std::get<msg::CtlShowQueue>(r);
  EXPECT_EQ(q.view, msg::QueueView::list);
  EXPECT_EQ(q.format, msg::CtlFormat::json);
  EXPECT_EQ(q.sender, "bob@");
  EXPECT_EQ(q.recipient, "alice");
  EXPECT_EQ(q.domain, "example.org");
  EXPECT_EQ(q.state, msg::StateFilter::pending);
  EXPECT_EQ(q.older, 3600u);
  EXPECT_EQ(q.newer, 2u * 86400);
  EXPECT_TRUE(q.after.empty());
  const auto shape = std::get<msg::CtlShowQueue>(parse_ok({"show", "shape", "state", "failed"}));
  EXPECT_EQ(shape.view, msg::QueueView::shape);
  EXPECT_EQ(shape.format, msg::CtlFormat::text);
  EXPECT_EQ(shape.state, msg::StateFilter::failed);
}

TEST(SmtpctlCommands, QueueFilterMistakes) {
  EXPECT_EQ(parse_error({"show", "queue", "from"}), "show queue: from needs a value");
  EXPECT_EQ(parse_error({"show", "queue", "state", "lost"}),
            "show queue: state is pending, delivered or failed, not lost");
  EXPECT_EQ(parse_error({"show", "queue", "colour", "red"}),
            "show queue: unknown filter colour (from, to, domain, state, older, newer)");
  EXPECT_EQ(parse_error({"show", "queue", "older", "soon"}),
            "bad age soon (e.g. 90s, 15m, 2h, 3d)");
}

TEST(SmtpctlCommands, EnvelopeAndMessage) {
  const auto e = std::get<msg::CtlShowMessage>(parse_ok({"show", "envelope", "0123456789abcdef"}));
  EXPECT_EQ(e.part, msg::MessagePart::envelope);
  EXPECT_EQ(e.id, "0123456789abcdef");
  const auto m =
      std::get<msg::CtlShowMessage>(parse_ok({"show", "message", "0123456789abcdef"}, true));
  EXPECT_EQ(m.part, msg::MessagePart::data);
  EXPECT_EQ(m.format, msg::CtlFormat::json);
  EXPECT_EQ(m.offset, 0u);
  EXPECT_EQ(parse_error({"show", "message", "all"}), "not a queue id: all");
  EXPECT_EQ(parse_error({"show", "envelope", "0123456789ABCDEF"}),
            "not a queue id: 0123456789ABCDEF");
}

TEST(SmtpctlCommands, PauseAndResume) {
  const auto mta = std::get<msg::CtlPause>(parse_ok({"pause", "mta"}));
  EXPECT_EQ(mta.target, Role::mta);
  EXPECT_TRUE(mta.pause);
  EXPECT_TRUE(mta.valid());
  const auto env = std::get<msg::CtlPause>(parse_ok({"resume", "envelope", "0123456789abcdef"}));
  EXPECT_EQ(env.target, Role::queue);
  EXPECT_FALSE(env.pause);
  EXPECT_EQ(env.envelope, "0123456789abcdef");
  EXPECT_TRUE(env.valid());
  const auto domain = std::get<msg::CtlPause>(parse_ok({"pause", "domain", "example.org"}));
  EXPECT_EQ(domain.domain, "example.org");
  EXPECT_TRUE(domain.valid());
  EXPECT_EQ(parse_error({"pause", "domain", "bob@example.org"}), "not a domain: bob@example.org");
  EXPECT_EQ(parse_error({"pause", "lookup"}), "unknown command: pause lookup");
  // What the wire refuses whatever smtpctl sends: a target that pauses nothing.
  EXPECT_FALSE(
      (msg::CtlPause{.target = Role::lookup, .pause = true, .envelope = "", .domain = ""}).valid());
}

TEST(SmtpctlCommands, LocalCommands) {
  EXPECT_EQ(std::get<Monitor>(parse_ok({"monitor"})).count, 0u);
  EXPECT_EQ(std::get<Monitor>(parse_ok({"monitor", "3"})).count, 3u);
  EXPECT_EQ(parse_error({"monitor", "0"}), "monitor: not a number of lines: 0");
  const Encrypt typed = std::get<Encrypt>(parse_ok({"encrypt", "secret"}));
  EXPECT_TRUE(typed.given);
  EXPECT_EQ(typed.password, "secret");
  EXPECT_FALSE(std::get<Encrypt>(parse_ok({"encrypt"})).given);
}

TEST(SmtpctlCommands, DaemonCommands) {
  EXPECT_TRUE(std::holds_alternative<msg::CtlReload>(parse_ok({"reload"})));
  EXPECT_TRUE(std::holds_alternative<msg::CtlStop>(parse_ok({"stop"})));
  EXPECT_EQ(parse_error({"reload", "now"}), "unknown command: reload now");
  EXPECT_EQ(parse_error({"reload"}, true), "--json goes with show commands only");
}

TEST(SmtpctlCommands, JsonOnlyWithShow) {
  EXPECT_EQ(parse_error({"remove", "all"}, true), "--json goes with show commands only");
  EXPECT_EQ(parse_error({"monitor"}, true), "--json goes with show commands only");
  EXPECT_TRUE(parse_command({"show", "status"}, true).ok());
  EXPECT_TRUE(parse_command({"show", "stats"}, true).ok());
}

TEST(SmtpctlCommands, Unknown) {
  EXPECT_EQ(parse_error({}), "no command");
  EXPECT_EQ(parse_error({"frobnicate"}), "unknown command: frobnicate");
  EXPECT_EQ(parse_error({"show", "status", "now"}), "unknown command: show status now");
}

}  // namespace
}  // namespace postern::smtpctl
