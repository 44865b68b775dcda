// Local submission files (queue/submission.hpp): read strictly, and made into the message the
// spool keeps: the trace header with the uid, missing headers added, the sender recorded.
#include "queue/submission.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::queue {
namespace {

constexpr time_t kWhen = 1796000000;

std::string file(const std::string& header_lines, const std::string& message) {
  return std::string(kSubmissionMagic) + header_lines + "size " + std::to_string(message.size()) +
         "\n\n" + message;
}

TEST(Submission, WrittenHeaderReadsBack) {
  const std::string message = "Subject: x\n\nbody\n";
  const std::string bytes = submission_header(std::string("boss@example.com"), "Boss",
                                              {"alice", "b@c.d"}, message.size()) +
                            message;
  auto s = parse_submission(bytes);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->sender, "boss@example.com");
  EXPECT_EQ(s->full_name, "Boss");
  EXPECT_EQ(s->recipients, (std::vector<std::string>{"alice", "b@c.d"}));
  EXPECT_EQ(s->message, message);
  auto null_sender = parse_submission(submission_header(std::string(), "", {"a"}, 0));
  ASSERT_TRUE(null_sender.ok());
  EXPECT_EQ(null_sender->sender, "");
  auto no_sender = parse_submission(submission_header(std::nullopt, "", {"a"}, 0));
  ASSERT_TRUE(no_sender.ok());
  EXPECT_FALSE(no_sender->sender.has_value());
}

TEST(Submission, AnythingElseIsRefused) {
  const char* bad[] = {
      "",
      "garbage",
      "postern-submission 2\nrcpt a\nsize 0\n\n",
      "postern-submission 1\nsize 0\n\n",                          // no recipient
      "postern-submission 1\nrcpt a\n\n",                          // no size
      "postern-submission 1\nrcpt a\nsize 1\n\n",                  // shorter than said
      "postern-submission 1\nrcpt a\nsize 0\n\nx",                 // longer
      "postern-submission 1\nrcpt a\nsize -1\n\n",                 //
      "postern-submission 1\nrcpt a\nsize 0x0\n\n",                //
      "postern-submission 1\nrcpt a\nuid 0\nsize 0\n\n",           // unknown key
      "postern-submission 1\nfrom a\nfrom b\nrcpt a\nsize 0\n\n",  // repeated
      "postern-submission 1\nrcpt a\rb\nsize 0\n\n",               // control character
      "postern-submission 1\nrcpt \nsize 0\n\n",                   // empty value
      "postern-submission 1\nsize 0\nrcpt a\n\n",                  // after size
      "postern-submission 1\nrcpt a\nsize 0\n",                    // header not ended
  };
  for (const char* text : bad) EXPECT_FALSE(parse_submission(text).ok()) << text;
}

LocalMessage make(const std::string& bytes, LocalSubmitter who, uint64_t max = 1 << 20) {
  auto s = parse_submission(bytes);
  EXPECT_TRUE(s.ok());
  auto m = make_local_message(s.value(), who, "mx.example", "0123456789abcdef", kWhen, max);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? m.value() : LocalMessage{};
}

TEST(Submission, MessageGetsTraceAndMissingHeaders) {
  const LocalMessage m = make(file("rcpt alice\nrcpt Bob@Example.ORG\n", "Subject: hi\n\nline\n"),
                              {.uid = 1000, .user = "carol", .trusted = false});
  EXPECT_EQ(m.envelope.sender, "carol@mx.example");
  ASSERT_EQ(m.envelope.recipients.size(), 2u);
  EXPECT_EQ(m.envelope.recipients[0].address, "alice@mx.example");
  EXPECT_EQ(m.envelope.recipients[1].address, "Bob@example.org");
  EXPECT_EQ(m.envelope.listener, "local");
  EXPECT_TRUE(m.sender_warning.empty());
  EXPECT_TRUE(
      m.data.starts_with("Received: by mx.example (Postern, from userid 1000 carol)\r\n"
                         "\tid 0123456789abcdef;\r\n\t"));
  EXPECT_NE(m.data.find("\r\nMessage-ID: <"), std::string::npos);
  EXPECT_NE(m.data.find(".0123456789abcdef@mx.example>\r\n"), std::string::npos);
  EXPECT_NE(m.data.find("\r\nDate: "), std::string::npos);
  EXPECT_NE(m.data.find("\r\nFrom: carol@mx.example\r\n"), std::string::npos);
  EXPECT_TRUE(m.data.ends_with("\r\nSubject: hi\r\n\r\nline\r\n"));
}

TEST(Submission, HeadersThatAreThereAreKept) {
  const std::string msg =
      "From: Me <me@x.example>\nmessage-id: <a@b>\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\n"
      "Subject: s\n\nFrom: not a header\n";
  const LocalMessage m =
      make(file("rcpt a@b.c\n", msg), {.uid = 0, .user = "root", .trusted = true});
  EXPECT_EQ(m.data.find("\r\nMessage-ID: <"), std::string::npos);
  EXPECT_EQ(m.data.find("\r\nDate: "), std::string::npos);
  EXPECT_EQ(m.data.find("\r\nFrom: root"), std::string::npos);
}

TEST(Submission, BodyWithoutHeaderGetsTheEmptyLine) {
  const LocalMessage m =
      make(file("rcpt a@b.c\n", "just text\nno header"), {.uid = 5, .user = "u", .trusted = false});
  EXPECT_TRUE(m.data.ends_with("\r\nFrom: u@mx.example\r\n\r\njust text\r\nno header\r\n"))
      << m.data;
}

TEST(Submission, UntrustedSenderIsRecorded) {
  const LocalMessage m = make(file("from boss@example.com\nname Big \"B\"\nrcpt a@b.c\n", "x\n"),
                              {.uid = 1000, .user = "carol", .trusted = false});
  EXPECT_EQ(m.envelope.sender, "boss@example.com");
  EXPECT_EQ(m.sender_warning, "uid 1000 (carol) set sender to <boss@example.com> using -f");
  EXPECT_NE(m.data.find("\r\nX-Authentication-Warning: mx.example: carol set sender to "
                        "boss@example.com using -f\r\n"),
            std::string::npos);
  EXPECT_NE(m.data.find("\r\nFrom: \"Big \\\"B\\\"\" <boss@example.com>\r\n"), std::string::npos);
  // Trusted, or naming oneself: nothing to record.
  EXPECT_TRUE(make(file("from boss@example.com\nrcpt a@b.c\n", "x\n"),
                   {.uid = 0, .user = "root", .trusted = true})
                  .sender_warning.empty());
  EXPECT_TRUE(make(file("from carol\nrcpt a@b.c\n", "x\n"),
                   {.uid = 1000, .user = "carol", .trusted = false})
                  .sender_warning.empty());
  // The null sender is a sender too.
  const LocalMessage null =
      make(file("from <>\nrcpt a@b.c\n", "x\n"), {.uid = 1000, .user = "carol", .trusted = false});
  EXPECT_EQ(null.envelope.sender, "");
  EXPECT_NE(null.data.find("set sender to <> using -f"), std::string::npos);
}

TEST(Submission, BadAddressesAndSizeAreRefused) {
  const LocalSubmitter who{.uid = 1, .user = "u", .trusted = false};
  for (const char* lines : {"rcpt a@@b\n", "rcpt <a@b>\n", "from a b@c\nrcpt a@b.c\n"}) {
    const std::string bytes = file(lines, "x\n");  // the submission's message is a view into it
    auto s = parse_submission(bytes);
    ASSERT_TRUE(s.ok()) << lines;
    EXPECT_FALSE(
        make_local_message(s.value(), who, "mx.example", "0123456789abcdef", kWhen, 1000).ok())
        << lines;
  }
  const std::string bytes = file("rcpt a@b.c\n", std::string(2000, 'x'));
  auto s = parse_submission(bytes);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(
      make_local_message(s.value(), who, "mx.example", "0123456789abcdef", kWhen, 1000).ok());
}

}  // namespace
}  // namespace postern::queue
