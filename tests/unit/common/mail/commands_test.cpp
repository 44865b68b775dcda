// Tests for common/mail/commands.cpp: every verb in every case, each syntax error, ESMTP parameter
// splitting, the line limit, and the SIZE/BDAT/xtext/NOTIFY/RET/ORCPT/ENVID value parsers
// with good and hostile inputs.
#include "common/mail/commands.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::mail {
namespace {

using namespace std::string_literals;

struct Good {
  std::string line;
  Verb verb;
  std::string verb_text;
  std::string argument;
  std::string path = {};
  std::vector<Param> params = {};
};

const std::vector<Good> kGood = {
    {"HELO client.example", Verb::helo, "HELO", "client.example"},
    {"helo client.example", Verb::helo, "HELO", "client.example"},
    {"EHLO client.example", Verb::ehlo, "EHLO", "client.example"},
    {"eHlO [192.0.2.1]", Verb::ehlo, "EHLO", "[192.0.2.1]"},
    // The argument is passed on as sent; judging it is the session's business.
    {"EHLO  two spaces", Verb::ehlo, "EHLO", " two spaces"},
    {"MAIL FROM:<a@b.example>", Verb::mail, "MAIL", "FROM:<a@b.example>", "<a@b.example>"},
    {"mail from:<a@b.example>", Verb::mail, "MAIL", "from:<a@b.example>", "<a@b.example>"},
    {"Mail From:<>", Verb::mail, "MAIL", "From:<>", "<>"},
    {"MAIL FROM: <a@b.example>", Verb::mail, "MAIL", "FROM: <a@b.example>", "<a@b.example>"},
    {"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME",
     Verb::mail,
     "MAIL",
     "FROM:<a@b.example> SIZE=100 BODY=8BITMIME",
     "<a@b.example>",
     {{"SIZE", "100"}, {"BODY", "8BITMIME"}}},
    {"MAIL FROM:<> size=0 smtputf8 Ret=HDRS envid=QQ+2B1",
     Verb::mail,
     "MAIL",
     "FROM:<> size=0 smtputf8 Ret=HDRS envid=QQ+2B1",
     "<>",
     {{"SIZE", "0"}, {"SMTPUTF8", std::nullopt}, {"RET", "HDRS"}, {"ENVID", "QQ+2B1"}}},
    {"MAIL FROM:<a@b> AUTH=<>",
     Verb::mail,
     "MAIL",
     "FROM:<a@b> AUTH=<>",
     "<a@b>",
     {{"AUTH", "<>"}}},
    {"MAIL FROM:<a@b> X-1=a:b;c",
     Verb::mail,
     "MAIL",
     "FROM:<a@b> X-1=a:b;c",
     "<a@b>",
     {{"X-1", "a:b;c"}}},
    {"MAIL FROM:<a@b> 8BITMIME-X",
     Verb::mail,
     "MAIL",
     "FROM:<a@b> 8BITMIME-X",
     "<a@b>",
     {{"8BITMIME-X", std::nullopt}}},
    // The path token ends at the first '>' outside quotes; a quoted local part may hold
    // spaces and '>'.
    {"MAIL FROM:<\"a> b\"@x> SIZE=1",
     Verb::mail,
     "MAIL",
     "FROM:<\"a> b\"@x> SIZE=1",
     "<\"a> b\"@x>",
     {{"SIZE", "1"}}},
    {R"(MAIL FROM:<"a\"> b"@x>)", Verb::mail, "MAIL", R"(FROM:<"a\"> b"@x>)", R"(<"a\"> b"@x>)"},
    // Anything between the brackets is address:: business, not ours.
    {"MAIL FROM:<a b>", Verb::mail, "MAIL", "FROM:<a b>", "<a b>"},
    {"MAIL FROM:<@r.example:a@b>", Verb::mail, "MAIL", "FROM:<@r.example:a@b>", "<@r.example:a@b>"},
    {"MAIL FROM:<j\xc3\xb6ran@b> SMTPUTF8",
     Verb::mail,
     "MAIL",
     "FROM:<j\xc3\xb6ran@b> SMTPUTF8",
     "<j\xc3\xb6ran@b>",
     {{"SMTPUTF8", std::nullopt}}},
    {"RCPT TO:<postmaster>", Verb::rcpt, "RCPT", "TO:<postmaster>", "<postmaster>"},
    {"rcpt to:<user@example.com>", Verb::rcpt, "RCPT", "to:<user@example.com>",
     "<user@example.com>"},
    {"RCPT TO: <user@example.com>", Verb::rcpt, "RCPT", "TO: <user@example.com>",
     "<user@example.com>"},
    {"RCPT TO:<u@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40x",
     Verb::rcpt,
     "RCPT",
     "TO:<u@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40x",
     "<u@x>",
     {{"NOTIFY", "SUCCESS,FAILURE"}, {"ORCPT", "rfc822;u+40x"}}},
    {"DATA", Verb::data, "DATA", ""},
    {"data", Verb::data, "DATA", ""},
    {"BDAT 1000", Verb::bdat, "BDAT", "1000"},
    {"bdat 0 last", Verb::bdat, "BDAT", "0 last"},
    {"RSET", Verb::rset, "RSET", ""},
    {"NOOP", Verb::noop, "NOOP", ""},
    {"noop anything at all", Verb::noop, "NOOP", "anything at all"},
    {"QUIT", Verb::quit, "QUIT", ""},
    {"VRFY user", Verb::vrfy, "VRFY", "user"},
    {"vrfy <user@example.com>", Verb::vrfy, "VRFY", "<user@example.com>"},
    {"HELP", Verb::help, "HELP", ""},
    {"help mail", Verb::help, "HELP", "mail"},
    {"STARTTLS", Verb::starttls, "STARTTLS", ""},
    {"StartTLS", Verb::starttls, "STARTTLS", ""},
    {"AUTH PLAIN", Verb::auth, "AUTH", "PLAIN"},
    {"auth plain AHVzZXIAcGFzcw==", Verb::auth, "AUTH", "plain AHVzZXIAcGFzcw=="},
    // RFC 5321 §4.1.1: trailing white space is tolerated.
    {"QUIT ", Verb::quit, "QUIT", ""},
    {"DATA   ", Verb::data, "DATA", ""},
    {"EHLO client.example  ", Verb::ehlo, "EHLO", "client.example"},
    {"MAIL FROM:<a@b> SIZE=1 ", Verb::mail, "MAIL", "FROM:<a@b> SIZE=1", "<a@b>", {{"SIZE", "1"}}},
    // 8-bit octets outside the path are not this parser's to refuse.
    {"NOOP \xc3\xa4", Verb::noop, "NOOP", "\xc3\xa4"},
};

TEST(Commands, ParsesEveryVerb) {
  for (const Good& g : kGood) {
    SCOPED_TRACE(g.line);
    const ParsedLine parsed = parse_command(g.line);
    EXPECT_EQ(parsed.error, SyntaxError::none) << parsed.detail;
    EXPECT_TRUE(parsed.detail.empty());
    EXPECT_EQ(parsed.command.verb, g.verb);
    EXPECT_EQ(parsed.command.verb_text, g.verb_text);
    EXPECT_EQ(parsed.command.argument, g.argument);
    EXPECT_EQ(parsed.command.path, g.path);
    EXPECT_EQ(parsed.command.params, g.params);
  }
}

struct Bad {
  std::string line;
  SyntaxError error;
  std::string detail;
};

const std::vector<Bad> kBad = {
    // Unknown verbs.
    {"", SyntaxError::unknown_verb, "empty command"},
    {"   ", SyntaxError::unknown_verb, "empty command"},
    {" QUIT", SyntaxError::unknown_verb, "unrecognized command"},
    {"EXPN staff", SyntaxError::unknown_verb, "unrecognized command"},
    {"TURN", SyntaxError::unknown_verb, "unrecognized command"},
    {"GET / HTTP/1.1", SyntaxError::unknown_verb, "unrecognized command"},
    {"QUITX", SyntaxError::unknown_verb, "unrecognized command"},
    {"MAIL:FROM:<a@b>", SyntaxError::unknown_verb, "unrecognized command"},
    {"\xc3\xa4", SyntaxError::unknown_verb, "unrecognized command"},
    // Controls anywhere: NUL, CR, LF, TAB, ESC, DEL.
    {"QUIT\0"s, SyntaxError::bad_syntax, "control character in command"},
    {"MAIL FROM:<a\0@b>"s, SyntaxError::bad_syntax, "control character in command"},
    {"RSET\rQUIT", SyntaxError::bad_syntax, "control character in command"},
    {"RCPT TO:<a@b>\nDATA", SyntaxError::bad_syntax, "control character in command"},
    {"EHLO\tclient", SyntaxError::bad_syntax, "control character in command"},
    {"EHLO client\t", SyntaxError::bad_syntax, "control character in command"},
    {"NOOP \x1b[2J", SyntaxError::bad_syntax, "control character in command"},
    {"NOOP \x7f", SyntaxError::bad_syntax, "control character in command"},
    {"XYZZY\x01", SyntaxError::bad_syntax, "control character in command"},
    // Verbs that take no argument.
    {"DATA x", SyntaxError::bad_syntax, "no parameters allowed"},
    {"RSET x", SyntaxError::bad_syntax, "no parameters allowed"},
    {"QUIT now", SyntaxError::bad_syntax, "no parameters allowed"},
    {"STARTTLS x", SyntaxError::bad_syntax, "no parameters allowed"},
    // Verbs that require one.
    {"EHLO", SyntaxError::bad_syntax, "domain or address required"},
    {"HELO", SyntaxError::bad_syntax, "domain or address required"},
    {"EHLO ", SyntaxError::bad_syntax, "domain or address required"},
    {"VRFY", SyntaxError::bad_syntax, "argument required"},
    {"AUTH", SyntaxError::bad_syntax, "mechanism required"},
    {"BDAT", SyntaxError::bad_syntax, "expected chunk size [LAST]"},
    {"BDAT x", SyntaxError::bad_syntax, "expected chunk size [LAST]"},
    {"BDAT 10 MORE", SyntaxError::bad_syntax, "expected chunk size [LAST]"},
    {"BDAT -1", SyntaxError::bad_syntax, "expected chunk size [LAST]"},
    // MAIL and RCPT.
    {"MAIL", SyntaxError::bad_syntax, "expected FROM:"},
    {"MAIL <a@b>", SyntaxError::bad_syntax, "expected FROM:"},
    {"MAIL FROM <a@b>", SyntaxError::bad_syntax, "expected FROM:"},
    {"MAIL TO:<a@b>", SyntaxError::bad_syntax, "expected FROM:"},
    {"MAIL  FROM:<a@b>", SyntaxError::bad_syntax, "expected FROM:"},
    {"RCPT", SyntaxError::bad_syntax, "expected TO:"},
    {"RCPT FROM:<a@b>", SyntaxError::bad_syntax, "expected TO:"},
    {"RCPT TO <a@b>", SyntaxError::bad_syntax, "expected TO:"},
    {"MAIL FROM:", SyntaxError::bad_syntax, "missing '<'"},
    {"MAIL FROM:a@b", SyntaxError::bad_syntax, "missing '<'"},
    {"MAIL FROM:  <a@b>", SyntaxError::bad_syntax, "missing '<'"},
    {"RCPT TO:postmaster", SyntaxError::bad_syntax, "missing '<'"},
    {"MAIL FROM:<a@b", SyntaxError::bad_syntax, "missing '>'"},
    {"MAIL FROM:<\"a@b>", SyntaxError::bad_syntax, "missing '>'"},
    {"MAIL FROM:<\"a\\", SyntaxError::bad_syntax, "missing '>'"},
    {"MAIL FROM:<a@b>SIZE=1", SyntaxError::bad_syntax, "missing space after path"},
    {"MAIL FROM:<a@b>>", SyntaxError::bad_syntax, "missing space after path"},
    // Parameters.
    {"MAIL FROM:<a@b>  SIZE=1", SyntaxError::bad_syntax, "empty parameter"},
    {"MAIL FROM:<a@b> SIZE=1  BODY=7BIT", SyntaxError::bad_syntax, "empty parameter"},
    {"MAIL FROM:<a@b> =1", SyntaxError::bad_syntax, "invalid parameter keyword"},
    {"MAIL FROM:<a@b> -SIZE=1", SyntaxError::bad_syntax, "invalid parameter keyword"},
    {"MAIL FROM:<a@b> SI_ZE=1", SyntaxError::bad_syntax, "invalid parameter keyword"},
    {"MAIL FROM:<a@b> S\xc3\xa4=1", SyntaxError::bad_syntax, "invalid parameter keyword"},
    {"MAIL FROM:<a@b> SIZE=", SyntaxError::bad_syntax, "empty parameter value"},
    {"MAIL FROM:<a@b> SIZE==1", SyntaxError::bad_syntax, "invalid parameter value"},
    {"MAIL FROM:<a@b> ENVID=a=b", SyntaxError::bad_syntax, "invalid parameter value"},
    {"MAIL FROM:<a@b> ENVID=\xc3\xa4", SyntaxError::bad_syntax, "invalid parameter value"},
    {"MAIL FROM:<a@b> SIZE=1 size=2", SyntaxError::bad_syntax, "duplicate parameter"},
    {"RCPT TO:<a@b> NOTIFY=NEVER Notify=DELAY", SyntaxError::bad_syntax, "duplicate parameter"},
    {"MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8", SyntaxError::bad_syntax, "duplicate parameter"},
};

TEST(Commands, RefusesBadSyntax) {
  for (const Bad& b : kBad) {
    SCOPED_TRACE(b.line);
    const ParsedLine parsed = parse_command(b.line);
    EXPECT_EQ(parsed.error, b.error);
    EXPECT_EQ(parsed.detail, b.detail);
  }
}

TEST(Commands, BadSyntaxKeepsTheVerb) {
  // The session still knows what was attempted, for its reply and its log line.
  const ParsedLine parsed = parse_command("mail FROM:<a@b> SIZE=");
  EXPECT_EQ(parsed.error, SyntaxError::bad_syntax);
  EXPECT_EQ(parsed.command.verb, Verb::mail);
  EXPECT_EQ(parsed.command.verb_text, "MAIL");
  const ParsedLine unknown = parse_command("xyzzy plugh");
  EXPECT_EQ(unknown.error, SyntaxError::unknown_verb);
  EXPECT_EQ(unknown.command.verb, Verb::unknown);
  EXPECT_EQ(unknown.command.verb_text, "XYZZY");
}

std::string params_line(size_t count) {
  std::string line = "MAIL FROM:<a@b>";
  for (size_t i = 0; i < count; ++i) line += " X" + std::to_string(i) + "=1";
  return line;
}

TEST(Commands, ParameterLimit) {
  const ParsedLine sixteen = parse_command(params_line(kMaxParams));
  EXPECT_EQ(sixteen.error, SyntaxError::none) << sixteen.detail;
  EXPECT_EQ(sixteen.command.params.size(), kMaxParams);
  const ParsedLine seventeen = parse_command(params_line(kMaxParams + 1));
  EXPECT_EQ(seventeen.error, SyntaxError::bad_syntax);
  EXPECT_EQ(seventeen.detail, "too many parameters");
}

TEST(Commands, LineLimit) {
  std::string line = "NOOP ";
  line += std::string(kMaxCommandLine - line.size(), 'x');
  ASSERT_EQ(line.size(), 510u);
  EXPECT_EQ(parse_command(line).error, SyntaxError::none);
  line += 'x';
  const ParsedLine parsed = parse_command(line);
  EXPECT_EQ(parsed.error, SyntaxError::too_long);
  EXPECT_EQ(parsed.detail, "line too long");
  // Checked before anything else, control characters included.
  EXPECT_EQ(parse_command(std::string(600, '\0')).error, SyntaxError::too_long);
}

TEST(Commands, BdatArgument) {
  using Chunk = std::pair<uint64_t, bool>;
  EXPECT_EQ(parse_bdat_argument("0"), Chunk(0, false));
  EXPECT_EQ(parse_bdat_argument("0 LAST"), Chunk(0, true));
  EXPECT_EQ(parse_bdat_argument("1000 last"), Chunk(1000, true));
  EXPECT_EQ(parse_bdat_argument("00042 LaSt"), Chunk(42, true));
  EXPECT_EQ(parse_bdat_argument("9223372036854775808"), Chunk(kMaxBdatSize, false));
  EXPECT_FALSE(parse_bdat_argument("9223372036854775809"));
  EXPECT_FALSE(parse_bdat_argument("18446744073709551616"));
  EXPECT_FALSE(parse_bdat_argument(""));
  EXPECT_FALSE(parse_bdat_argument(" 10"));
  EXPECT_FALSE(parse_bdat_argument("10 "));
  EXPECT_FALSE(parse_bdat_argument("10  LAST"));
  EXPECT_FALSE(parse_bdat_argument("10 LAST "));
  EXPECT_FALSE(parse_bdat_argument("10 LASTX"));
  EXPECT_FALSE(parse_bdat_argument("+10"));
  EXPECT_FALSE(parse_bdat_argument("-0"));
  EXPECT_FALSE(parse_bdat_argument("0x10"));
  EXPECT_FALSE(parse_bdat_argument("LAST"));
  EXPECT_FALSE(parse_bdat_argument("1e3"));
}

TEST(Commands, Xtext) {
  EXPECT_EQ(decode_xtext(""), "");
  EXPECT_EQ(decode_xtext("abc"), "abc");
  EXPECT_EQ(decode_xtext("a+2Bb"), "a+b");
  EXPECT_EQ(decode_xtext("+3D"), "=");
  EXPECT_EQ(decode_xtext("+20+41"), " A");
  EXPECT_EQ(decode_xtext("+00"), "\0"s);
  EXPECT_EQ(decode_xtext("+FF"), "\xff");
  EXPECT_EQ(decode_xtext("!~"), "!~");
  EXPECT_FALSE(decode_xtext("+2b"));  // upper-case hex only (RFC 3461 §4)
  EXPECT_FALSE(decode_xtext("+2"));
  EXPECT_FALSE(decode_xtext("+"));
  EXPECT_FALSE(decode_xtext("a+"));
  EXPECT_FALSE(decode_xtext("+G0"));
  EXPECT_FALSE(decode_xtext("a=b"));
  EXPECT_FALSE(decode_xtext("a b"));
  EXPECT_FALSE(decode_xtext("a\tb"));
  EXPECT_FALSE(decode_xtext("\xc3\xa4"));
  EXPECT_FALSE(decode_xtext("\x7f"));

  EXPECT_EQ(encode_xtext("user@example.com"), "user@example.com");
  EXPECT_EQ(encode_xtext("a+b=c d"), "a+2Bb+3Dc+20d");
  EXPECT_EQ(encode_xtext("\0\x7f\xff"s), "+00+7F+FF");
  const std::string all = [] {
    std::string s;
    for (int c = 0; c < 256; ++c) s += static_cast<char>(c);
    return s;
  }();
  EXPECT_EQ(decode_xtext(encode_xtext(all)), all);
}

TEST(Commands, SizeParam) {
  EXPECT_EQ(parse_size_param("0"), 0u);
  EXPECT_EQ(parse_size_param("10485760"), 10485760u);
  EXPECT_EQ(parse_size_param("000000000000000000001"), std::nullopt);  // 21 digits
  EXPECT_EQ(parse_size_param("00000000000000000001"), 1u);             // 20 digits
  EXPECT_EQ(parse_size_param("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(parse_size_param("18446744073709551616"));
  EXPECT_FALSE(parse_size_param("99999999999999999999"));
  EXPECT_FALSE(parse_size_param(""));
  EXPECT_FALSE(parse_size_param("+1"));
  EXPECT_FALSE(parse_size_param("-1"));
  EXPECT_FALSE(parse_size_param("1k"));
  EXPECT_FALSE(parse_size_param(" 1"));
}

TEST(Commands, Notify) {
  EXPECT_EQ(parse_notify("NEVER"), DsnNotify{.never = true});
  EXPECT_EQ(parse_notify("never"), DsnNotify{.never = true});
  EXPECT_EQ(parse_notify("SUCCESS"), DsnNotify{.success = true});
  EXPECT_EQ(parse_notify("failure,Delay"), (DsnNotify{.failure = true, .delay = true}));
  EXPECT_EQ(parse_notify("DELAY,SUCCESS,FAILURE"),
            (DsnNotify{.success = true, .failure = true, .delay = true}));
  EXPECT_FALSE(parse_notify(""));
  EXPECT_FALSE(parse_notify("NEVER,SUCCESS"));
  EXPECT_FALSE(parse_notify("SUCCESS,NEVER"));
  EXPECT_FALSE(parse_notify("NEVER,NEVER"));
  EXPECT_FALSE(parse_notify("SUCCESS,SUCCESS"));
  EXPECT_FALSE(parse_notify("SUCCESS,"));
  EXPECT_FALSE(parse_notify(",SUCCESS"));
  EXPECT_FALSE(parse_notify("SUCCESS,,DELAY"));
  EXPECT_FALSE(parse_notify("SUCCESS DELAY"));
  EXPECT_FALSE(parse_notify("ALWAYS"));
}

TEST(Commands, Ret) {
  EXPECT_EQ(parse_ret("FULL"), DsnRet::full);
  EXPECT_EQ(parse_ret("full"), DsnRet::full);
  EXPECT_EQ(parse_ret("HDRS"), DsnRet::headers);
  EXPECT_EQ(parse_ret("Hdrs"), DsnRet::headers);
  EXPECT_FALSE(parse_ret(""));
  EXPECT_FALSE(parse_ret("HEADERS"));
  EXPECT_FALSE(parse_ret("FULL,HDRS"));
}

TEST(Commands, Orcpt) {
  EXPECT_EQ(parse_orcpt("rfc822;user@example.com"), (Orcpt{"rfc822", "user@example.com"}));
  EXPECT_EQ(parse_orcpt("RFC822;a+2Bb+20c@x"), (Orcpt{"RFC822", "a+b c@x"}));
  EXPECT_EQ(parse_orcpt("x-local;a;b"), (Orcpt{"x-local", "a;b"}));
  EXPECT_FALSE(parse_orcpt("user@example.com"));
  EXPECT_FALSE(parse_orcpt(";user@example.com"));
  EXPECT_FALSE(parse_orcpt("rfc822;"));
  EXPECT_FALSE(parse_orcpt("rfc(822);user@x"));
  EXPECT_FALSE(parse_orcpt("rfc 822;user@x"));
  EXPECT_FALSE(parse_orcpt("rfc822;user+4"));
  EXPECT_FALSE(parse_orcpt("rfc822;a+0Db"));  // decoded CR would forge a DSN header line
  EXPECT_FALSE(parse_orcpt("rfc822;a+00b"));
  EXPECT_FALSE(parse_orcpt("rfc822;a+C3+A4"));  // RFC 3461 §4.2: US-ASCII only
  const std::string address500(kMaxOrcptAddress, 'a');
  EXPECT_EQ(parse_orcpt("rfc822;" + address500), (Orcpt{"rfc822", address500}));
  EXPECT_FALSE(parse_orcpt("rfc822;" + address500 + "a"));
  // The limit is on the decoded address.
  std::string encoded;
  for (size_t i = 0; i < kMaxOrcptAddress; ++i) encoded += "+41";
  EXPECT_TRUE(parse_orcpt("rfc822;" + encoded));
  EXPECT_FALSE(parse_orcpt("rfc822;" + encoded + "+41"));
}

TEST(Commands, Envid) {
  EXPECT_EQ(parse_envid("QQ314159"), "QQ314159");
  EXPECT_EQ(parse_envid("a+2Bb+20c"), "a+b c");
  EXPECT_FALSE(parse_envid(""));
  EXPECT_FALSE(parse_envid("a=b"));
  EXPECT_FALSE(parse_envid("a+0A"));
  EXPECT_FALSE(parse_envid("a+FF"));
  EXPECT_FALSE(parse_envid("a+2b"));
  const std::string envid100(kMaxEnvid, 'e');
  EXPECT_EQ(parse_envid(envid100), envid100);
  EXPECT_FALSE(parse_envid(envid100 + "e"));
  std::string encoded;
  for (size_t i = 0; i < kMaxEnvid; ++i) encoded += "+2B";
  EXPECT_EQ(parse_envid(encoded), std::string(kMaxEnvid, '+'));
  EXPECT_FALSE(parse_envid(encoded + "+2B"));
}

}  // namespace
}  // namespace postern::mail
