// Every logged line is one line: text a remote server or a client chose (bare LF, CR,
// terminal escapes, broken UTF-8, megabytes) comes out escaped and bounded.
#include "common/util/log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace postern::log {
namespace {

TEST(LogSanitize, PrintableTextIsKept) {
  EXPECT_EQ(sanitize("to=<alice@example.org>, status=sent (250 2.0.0 Ok)"),
            "to=<alice@example.org>, status=sent (250 2.0.0 Ok)");
  EXPECT_EQ(sanitize("back\\slash"), "back\\slash");
}

TEST(LogSanitize, LineBreaksAndControlsAreEscaped) {
  EXPECT_EQ(sanitize("452 4.2.2 full\nstatus=sent to=<x>"), "452 4.2.2 full\\nstatus=sent to=<x>");
  EXPECT_EQ(sanitize("a\r\nb\tc"), "a\\r\\nb\\tc");
  EXPECT_EQ(sanitize("\x1b[2Jcleared\x7f"), "\\x1b[2Jcleared\\x7f");
  EXPECT_EQ(sanitize(std::string("nul\0byte", 8)), "nul\\x00byte");
}

TEST(LogSanitize, Utf8IsKeptBrokenBytesAreEscaped) {
  EXPECT_EQ(sanitize("j\xc3\xb6rg@b\xc3\xbc\x63her.example \xe2\x9c\x93 \xf0\x9f\x93\xa8"),
            "j\xc3\xb6rg@b\xc3\xbc\x63her.example \xe2\x9c\x93 \xf0\x9f\x93\xa8");
  EXPECT_EQ(sanitize("latin1 \xe9t\xe9"), "latin1 \\xe9t\\xe9");
  EXPECT_EQ(sanitize("overlong \xc0\xaf"), "overlong \\xc0\\xaf");
  EXPECT_EQ(sanitize("surrogate \xed\xa0\x80"), "surrogate \\xed\\xa0\\x80");
  EXPECT_EQ(sanitize("cut \xe2\x9c"), "cut \\xe2\\x9c");
  // C1 controls (U+009B is a terminal's CSI) are escaped although they are valid UTF-8.
  EXPECT_EQ(sanitize("csi \xc2\x9b"
                     "2J"),
            "csi \\xc2\\x9b2J");
}

TEST(LogSanitize, LinesAreBounded) {
  const std::string exact(kMaxLine, 'a');
  EXPECT_EQ(sanitize(exact), exact);
  const std::string out = sanitize(std::string(kMaxLine + 1, 'a'));
  EXPECT_EQ(out.size(), kMaxLine);
  EXPECT_TRUE(out.ends_with("..."));
  const std::string escaped = sanitize(std::string(10000, '\n'));
  EXPECT_LE(escaped.size(), kMaxLine);
  EXPECT_TRUE(escaped.ends_with("..."));
  EXPECT_EQ(escaped.find('\n'), std::string::npos);
}

// What reaches stderr (the -d destination): one line per call, the injected text inside it.
TEST(LogSanitize, EmittedLinesCannotBeSplit) {
  char path[] = "/tmp/postern-log-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  ASSERT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
  init("log-test", Destination::stderr_stream, false);
  info("%s: to=<%s>, status=deferred (%s)", "0123456789abcdef", "bob@example.org",
       "LMTP: 452 4.2.2 full\nstatus=sent to=<x>\r\nfake[1]: line");
  warn("%s", std::string(100000, 'z').c_str());
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string text(300000, '\0');
  const ssize_t n = pread(fd, text.data(), text.size(), 0);
  close(fd);
  ASSERT_GT(n, 0);
  text.resize(static_cast<size_t>(n));
  size_t lines = 0;
  size_t start = 0;
  for (size_t eol = text.find('\n', start); eol != std::string::npos;
       eol = text.find('\n', start)) {
    const std::string line = text.substr(start, eol - start);
    EXPECT_TRUE(line.starts_with("log-test[")) << line;
    EXPECT_LE(line.size(), kMaxLine + 64);
    ++lines;
    start = eol + 1;
  }
  EXPECT_EQ(start, text.size());
  EXPECT_EQ(lines, 2u) << text.substr(0, 400);
  EXPECT_NE(text.find("full\\nstatus=sent to=<x>\\r\\nfake[1]: line)"), std::string::npos);
}

TEST(LogLine, PostfixDeliveryLinesAreInTheGrammar) {
  const std::string text = Line("0123456789abcdef")
                               .add("to", "<alice@example.org>")
                               .add("relay", "local")
                               .add("delay", "0")
                               .add("dsn", "2.0.0")
                               .add("status", "sent")
                               .comment("delivered to maildir (new)")
                               .text();
  EXPECT_EQ(text,
            "0123456789abcdef: to=<alice@example.org>, relay=local, delay=0, dsn=2.0.0, "
            "status=sent (delivered to maildir (new))");
  const std::optional<ParsedLine> parsed = parse_line(text);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->subject, "0123456789abcdef");
  ASSERT_EQ(parsed->fields.size(), 5u);
  EXPECT_EQ(parsed->fields[4], (std::pair<std::string, std::string>{"status", "sent"}));
  EXPECT_EQ(parsed->comment, "delivered to maildir (new)");
}

TEST(LogLine, ValuesChosenByAClientCannotAddAFieldOrALine) {
  const std::string forged = "x\", status=sent, to=<root@x>\nsmtpd[1]: fake (y)\\";
  const std::string text =
      Line().session(0xabc).add("event", "reject").add("command", forged).text();
  EXPECT_EQ(text.find('\n'), std::string::npos);
  const std::optional<ParsedLine> parsed = parse_line(text);
  ASSERT_TRUE(parsed.has_value()) << text;
  ASSERT_EQ(parsed->fields.size(), 3u) << text;
  EXPECT_EQ(parsed->fields[0].second, "0000000000000abc");
  EXPECT_EQ(parsed->fields[2].first, "command");
  EXPECT_EQ(parsed->fields[2].second, forged);
  EXPECT_FALSE(parsed->comment.has_value());
}

TEST(LogLine, QuotingIsOnlyWhereNeeded) {
  EXPECT_EQ(quote("[127.0.0.1]"), "[127.0.0.1]");
  EXPECT_EQ(quote(""), "\"\"");
  EXPECT_EQ(quote("TLSv1.3 TLS_AES_256_GCM_SHA384"), "\"TLSv1.3 TLS_AES_256_GCM_SHA384\"");
  EXPECT_EQ(quote("a,b"), "\"a,b\"");
  EXPECT_EQ(quote("j\xc3\xb6rg \x1b"), "\"j\xc3\xb6rg \\x1b\"");
  const std::string cut = quote(std::string(1000, '"'), 100);
  EXPECT_LE(cut.size(), 102u);
  EXPECT_TRUE(parse_line("k=" + cut).has_value()) << cut;
}

TEST(LogLine, TheReaderIsStrict) {
  EXPECT_TRUE(parse_line("msg=\"spool ready\"").has_value());
  EXPECT_TRUE(parse_line("warning: msg=x").has_value());
  EXPECT_EQ(parse_line("warning: msg=x")->level, Level::warning);
  EXPECT_TRUE(parse_line("error: 0123abcd: event=commit, result=failed").has_value());
  EXPECT_FALSE(parse_line("").has_value());
  EXPECT_FALSE(parse_line("free text").has_value());
  EXPECT_FALSE(parse_line("a=b,c=d").has_value());
  EXPECT_FALSE(parse_line("a=b  c=d").has_value());
  EXPECT_FALSE(parse_line("a=\"open").has_value());
  EXPECT_FALSE(parse_line("a=\"bad escape \\q\"").has_value());
  EXPECT_FALSE(parse_line("a=b (unclosed").has_value());
  EXPECT_FALSE(parse_line("a=b (x) c=d").has_value());
  EXPECT_FALSE(parse_line("a=b\x01").has_value());
  EXPECT_FALSE(parse_line("A=b").has_value());
  EXPECT_FALSE(parse_line("a=").has_value());
  EXPECT_FALSE(parse_line("x: y: z: a=b").has_value());
}

TEST(LogLine, JsonKeepsEveryFieldAndEscapes) {
  const std::optional<ParsedLine> parsed =
      parse_line("warning: 00ff: to=<a@b>, reply=\"550 \\\"no\\\"\", time=x (text \xc3\xa9)");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(to_json(*parsed, "\"pid\":1"),
            "{\"pid\":1,\"level\":\"warning\",\"id\":\"00ff\",\"to\":\"<a@b>\","
            "\"reply\":\"550 \\\"no\\\"\",\"field_time\":\"x\",\"text\":\"text \xc3\xa9\"}");
  EXPECT_EQ(json_string("\x01\xff"), "\"\\u0001\\u00ff\"");
}

}  // namespace
}  // namespace postern::log
