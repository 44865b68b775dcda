// Tests for common/mail/address.cpp: tables of accepted and refused paths and mailboxes for every
// rule, the hostile forms relay checks must see plainly (percent hack, source routes, quoted
// '@', trailing dots), length limits at their edges, UTF-8 rules, and the round trip.
#include "common/mail/address.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::address {
namespace {

using namespace std::string_literals;

enum class Kind { reverse, forward, mailbox };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::reverse:
      return "reverse";
    case Kind::forward:
      return "forward";
    case Kind::mailbox:
      return "mailbox";
  }
  return "?";
}

// One parse of any kind, as "null" (reverse path <>), a Mailbox or an error.
struct Outcome {
  bool ok = false;
  bool null = false;
  Mailbox mailbox;
  std::string error;
};

Outcome run(Kind kind, std::string_view text, bool utf8) {
  Outcome out;
  switch (kind) {
    case Kind::reverse: {
      auto r = parse_reverse_path(text, utf8);
      if (!r) {
        out.error = r.error().message;
      } else {
        out.ok = true;
        out.null = !r->has_value();
        if (r->has_value()) out.mailbox = *r.value();
      }
      break;
    }
    case Kind::forward: {
      auto r = parse_forward_path(text, utf8);
      if (!r) {
        out.error = r.error().message;
      } else {
        out.ok = true;
        out.mailbox = r.value();
      }
      break;
    }
    case Kind::mailbox: {
      auto r = parse_mailbox(text, utf8);
      if (!r) {
        out.error = r.error().message;
      } else {
        out.ok = true;
        out.mailbox = r.value();
      }
      break;
    }
  }
  return out;
}

// parse(to_string(m)) gives m back: the same local part, domain and flags, except that a
// needlessly quoted local part ("\"john\"") comes back unquoted, since to_string is canonical.
// Printing is a fixed point, and never contains a control character.
void expect_round_trip(const Mailbox& m, bool utf8) {
  const std::string text = to_string(m);
  SCOPED_TRACE("to_string: " + text);
  for (const char c : text) {
    EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f);
  }
  const auto again = parse_forward_path("<" + text + ">", utf8);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->local_part, m.local_part);
  EXPECT_EQ(again->domain, m.domain);
  EXPECT_EQ(again->literal, m.literal);
  EXPECT_EQ(again->utf8, m.utf8);
  EXPECT_EQ(again->quoted, !is_dot_string(m.local_part));
  if (m.quoted == !is_dot_string(m.local_part)) {
    EXPECT_EQ(again.value(), m);
  }
  EXPECT_EQ(to_string(again.value()), text);
  if (!m.domain.empty()) {
    const auto bare = parse_mailbox(text, utf8);
    ASSERT_TRUE(bare.ok()) << bare.error().message;
    EXPECT_EQ(bare->local_part, m.local_part);
    EXPECT_EQ(bare->domain, m.domain);
  }
}

struct Valid {
  Kind kind;
  std::string text;
  bool utf8;  // allow_utf8
  std::string local_part;
  std::string domain;
  bool quoted = false;
  bool literal = false;
  bool non_ascii = false;
};

const std::vector<Valid> kValid = {
    {Kind::forward, "<user@example.com>", false, "user", "example.com"},
    {Kind::reverse, "<user@example.com>", false, "user", "example.com"},
    {Kind::mailbox, "user@example.com", false, "user", "example.com"},
    // The local part keeps its case (RFC 5321 §2.4); the domain is lower-cased.
    {Kind::forward, "<John.Doe@Example.COM>", false, "John.Doe", "example.com"},
    {Kind::forward, "<!#$%&'*+-/=?^_`{|}~@example.com>", false, "!#$%&'*+-/=?^_`{|}~",
     "example.com"},
    {Kind::forward, "<a-b.c_d@sub-domain.example-1.com>", false, "a-b.c_d",
     "sub-domain.example-1.com"},
    {Kind::forward, "<1@123.com>", false, "1", "123.com"},
    {Kind::forward, "<x@localhost>", false, "x", "localhost"},
    {Kind::forward, "<x@xn--bcher-kva.example>", false, "x", "xn--bcher-kva.example"},
    // Percent hack and bang path: ordinary local parts, nothing interpreted.
    {Kind::forward, "<user%remote@local.example>", false, "user%remote", "local.example"},
    {Kind::reverse, "<user%remote@local.example>", false, "user%remote", "local.example"},
    {Kind::forward, "<remote!user@local.example>", false, "remote!user", "local.example"},
    {Kind::forward, "<a%b%c@local.example>", false, "a%b%c", "local.example"},
    // Source routes are checked and dropped.
    {Kind::forward, "<@relay.example:user@local.example>", false, "user", "local.example"},
    {Kind::reverse, "<@relay.example:user@local.example>", false, "user", "local.example"},
    {Kind::forward, "<@a.example,@B.example.:user@local.example>", false, "user", "local.example"},
    // Quoted local parts, including an '@' that must not be taken for the domain separator.
    {Kind::forward, "<\"user@remote.example\"@local.example>", false, "user@remote.example",
     "local.example", true},
    {Kind::forward, "<\"john\"@example.com>", false, "john", "example.com", true},
    {Kind::forward, "<\"john doe\"@example.com>", false, "john doe", "example.com", true},
    {Kind::forward, R"(<"a\"b\\c"@example.com>)", false, R"(a"b\c)", "example.com", true},
    {Kind::forward, R"(<"a\ b\x"@example.com>)", false, "a bx", "example.com", true},
    {Kind::forward, "<\"a>b\"@example.com>", false, "a>b", "example.com", true},
    {Kind::forward, "<\".a..b.\"@example.com>", false, ".a..b.", "example.com", true},
    {Kind::forward, "<\"<@>,;:[]()\"@example.com>", false, "<@>,;:[]()", "example.com", true},
    {Kind::mailbox, "\"a b\"@example.com", false, "a b", "example.com", true},
    // Address literals.
    {Kind::forward, "<user@[192.0.2.1]>", false, "user", "[192.0.2.1]", false, true},
    {Kind::mailbox, "user@[192.0.2.1]", false, "user", "[192.0.2.1]", false, true},
    {Kind::forward, "<user@[IPv6:2001:db8::1]>", false, "user", "[IPv6:2001:db8::1]", false, true},
    {Kind::forward, "<user@[ipv6:2001:DB8::1]>", false, "user", "[IPv6:2001:db8::1]", false, true},
    {Kind::forward, "<user@[IPv6:::ffff:192.0.2.1]>", false, "user", "[IPv6:::ffff:192.0.2.1]",
     false, true},
    // One trailing dot is kept (normalize_domain strips it), and the domain lower-cased.
    {Kind::forward, "<user@LOCAL.Example.>", false, "user", "local.example."},
    {Kind::mailbox, "user@local.example.", false, "user", "local.example."},
    // <Postmaster> without a domain: forward paths only, any case.
    {Kind::forward, "<postmaster>", false, "postmaster", ""},
    {Kind::forward, "<PostMaster>", false, "postmaster", ""},
    {Kind::forward, "<POSTMASTER>", true, "postmaster", ""},
    {Kind::forward, "<postmaster@x>", false, "postmaster", "x"},
    {Kind::reverse, "<postmaster@x>", false, "postmaster", "x"},
    {Kind::forward, "<PostMaster@Example.com>", false, "PostMaster", "example.com"},
    // UTF-8 with SMTPUTF8 (RFC 6531 §3.3): atext, qtext and U-labels.
    {Kind::forward, "<j\xc3\xb6ran@ex\xc3\xa4mple.org>", true, "j\xc3\xb6ran", "ex\xc3\xa4mple.org",
     false, false, true},
    {Kind::reverse, "<j\xc3\xb6ran@example.org>", true, "j\xc3\xb6ran", "example.org", false, false,
     true},
    {Kind::forward, "<user@ex\xc3\xa4mple.org>", true, "user", "ex\xc3\xa4mple.org", false, false,
     true},
    {Kind::forward, "<\"j\xc3\xb6 ran\"@example.org>", true, "j\xc3\xb6 ran", "example.org", true,
     false, true},
    {Kind::forward, "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
     true, "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", false,
     false, true},
    {Kind::forward, "<\xf0\x9f\x98\x80@example.org>", true, "\xf0\x9f\x98\x80", "example.org",
     false, false, true},
    {Kind::forward,
     "<u@B\xc3\x9c"
     "CHER.example>",
     true, "u",
     "b\xc3\x9c"
     "cher.example",
     false, false, true},
    {Kind::mailbox, "j\xc3\xb6ran@example.org", true, "j\xc3\xb6ran", "example.org", false, false,
     true},
    // Plain ASCII with allow_utf8 is not flagged.
    {Kind::forward, "<user@example.com>", true, "user", "example.com"},
};

TEST(Address, AcceptsValidForms) {
  for (const Valid& v : kValid) {
    SCOPED_TRACE(std::string(kind_name(v.kind)) + " " + v.text);
    const Outcome out = run(v.kind, v.text, v.utf8);
    ASSERT_TRUE(out.ok) << out.error;
    ASSERT_FALSE(out.null);
    EXPECT_EQ(out.mailbox.local_part, v.local_part);
    EXPECT_EQ(out.mailbox.domain, v.domain);
    EXPECT_EQ(out.mailbox.quoted, v.quoted);
    EXPECT_EQ(out.mailbox.literal, v.literal);
    EXPECT_EQ(out.mailbox.utf8, v.non_ascii);
    expect_round_trip(out.mailbox, v.utf8);
  }
}

struct Invalid {
  Kind kind;
  std::string text;
  bool utf8;
  std::string error;  // the exact message
};

const std::vector<Invalid> kInvalid = {
    // Brackets and what surrounds them.
    {Kind::forward, "user@example.com", false, "missing '<'"},
    {Kind::forward, "", false, "missing '<'"},
    {Kind::forward, " <user@example.com>", false, "missing '<'"},
    {Kind::forward, "<user@example.com", false, "missing '>'"},
    {Kind::forward, "<user@example.com> ", false, "text after '>'"},
    {Kind::forward, "<user@example.com>x", false, "text after '>'"},
    {Kind::forward, "<user@example.com>>", false, "text after '>'"},
    {Kind::reverse, "<> ", false, "text after '>'"},
    {Kind::reverse, "<><>", false, "text after '>'"},
    // Whitespace inside the brackets.
    {Kind::forward, "< user@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<user @example.com>", false, "invalid character in local part"},
    {Kind::forward, "<user@ example.com>", false, "invalid character in domain"},
    {Kind::forward, "<user@example.com >", false, "invalid character in domain"},
    {Kind::forward, "<user@exa mple.com>", false, "invalid character in domain"},
    // The null path is a sender only; <postmaster> without domain a recipient only.
    {Kind::forward, "<>", false, "null path not allowed as recipient"},
    {Kind::reverse, "<postmaster>", false, "missing domain"},
    {Kind::mailbox, "postmaster", false, "missing domain"},
    {Kind::forward, "<postmaster >", false, "invalid character in local part"},
    {Kind::forward, "<@relay.example:postmaster>", false, "missing domain"},
    {Kind::forward, "<\"postmaster\">", false, "missing domain"},
    // Domain required.
    {Kind::forward, "<user>", false, "missing domain"},
    {Kind::forward, "<user@>", false, "missing domain"},
    {Kind::mailbox, "user", false, "missing domain"},
    {Kind::mailbox, "user@", false, "missing domain"},
    {Kind::mailbox, "<user@example.com>", false, "invalid character in local part"},
    // Source routes.
    {Kind::forward, "<@example.com>", false, "invalid source route"},
    {Kind::forward, "<@relay.example,user@local.example>", false, "invalid source route"},
    {Kind::forward, "<@relay.example:>", false, "empty local part"},
    {Kind::forward, "<@:user@local.example>", false, "source route: missing domain"},
    {Kind::forward, "<@a..b:user@local.example>", false, "source route: empty domain label"},
    {Kind::forward, "<@[192.0.2.1]:user@local.example>", false,
     "source route: address literal not allowed here"},
    {Kind::forward, "<relay.example:user@local.example>", false, "invalid character in local part"},
    // Dot-string rules.
    {Kind::forward, "<.user@example.com>", false, "local part starts with '.'"},
    {Kind::forward, "<user.@example.com>", false, "local part ends with '.'"},
    {Kind::forward, "<us..er@example.com>", false, "'..' in local part"},
    {Kind::forward, "<@example.com:@x>", false, "empty local part"},
    {Kind::forward, "<a(b)@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<a,b@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<a;b@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<a[b@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<a\\b@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<a\"b\"@example.com>", false, "invalid character in local part"},
    {Kind::forward, "<a:b@example.com>", false, "invalid character in local part"},
    // Quoted-string rules.
    {Kind::forward, "<\"\"@example.com>", false, "empty local part"},
    {Kind::forward, "<\"abc@example.com>", false, "unterminated quoted string"},
    {Kind::forward, R"(<"a\"@example.com>)", false, "unterminated quoted string"},
    {Kind::forward, "<\"a\"b@example.com>", false, "missing '@' after local part"},
    {Kind::forward, "<\"a\".b@example.com>", false, "missing '@' after local part"},
    {Kind::forward, "<\"a\\\xc3\xb6\"@example.com>", true, "invalid quoted pair in local part"},
    // Domains.
    {Kind::forward, "<user@local.example..>", false, "empty domain label"},
    {Kind::forward, "<user@.example.com>", false, "empty domain label"},
    {Kind::forward, "<user@a..example.com>", false, "empty domain label"},
    {Kind::forward, "<user@.>", false, "empty domain label"},
    {Kind::mailbox, "user@local.example..", false, "empty domain label"},
    {Kind::forward, "<user@-example.com>", false, "domain label starts or ends with '-'"},
    {Kind::forward, "<user@example-.com>", false, "domain label starts or ends with '-'"},
    {Kind::forward, "<user@exa_mple.com>", false, "invalid character in domain"},
    {Kind::forward, "<user@example.com@other>", false, "invalid character in domain"},
    {Kind::forward, "<user@192.0.2.1]>", false, "invalid character in domain"},
    {Kind::forward, "<user@\"example\".com>", false, "invalid character in domain"},
    // Address literals.
    {Kind::forward, "<user@[192.0.2.256]>", false, "invalid IPv4 address literal"},
    {Kind::forward, "<user@[192.0.2]>", false, "invalid IPv4 address literal"},
    {Kind::forward, "<user@[0x7f.0.0.1]>", false, "invalid IPv4 address literal"},
    {Kind::forward, "<user@[ 192.0.2.1]>", false, "invalid IPv4 address literal"},
    {Kind::forward, "<user@[]>", false, "invalid IPv4 address literal"},
    {Kind::forward, "<user@[localhost]>", false, "invalid IPv4 address literal"},
    {Kind::forward, "<user@[IPv6:2001:db8::g]>", false, "invalid IPv6 address literal"},
    {Kind::forward, "<user@[IPv6:192.0.2.1]>", false, "invalid IPv6 address literal"},
    {Kind::forward, "<user@[IPv6:fe80::1%eth0]>", false, "invalid IPv6 address literal"},
    {Kind::forward, "<user@[2001:db8::1]>", false, "unsupported address literal"},
    {Kind::forward, "<user@[x400:c=us]>", false, "unsupported address literal"},
    {Kind::forward, "<user@[192.0.2.1>", false, "unterminated address literal"},
    {Kind::forward, "<user@[192.0.2.1].>", false, "unterminated address literal"},
    // Control characters and NUL, anywhere, quoted or not.
    {Kind::forward,
     "<us\x01"
     "er@example.com>",
     false, "control character in address"},
    {Kind::forward, "<user@example.com\r\n>", false, "control character in address"},
    {Kind::forward, "<user\0@example.com>"s, false, "control character in address"},
    {Kind::forward, "<user@exa\0mple.com>"s, true, "control character in address"},
    {Kind::forward, "<u\x7f@example.com>", false, "control character in address"},
    {Kind::forward, "<\tuser@example.com>", false, "control character in address"},
    {Kind::forward, "<\"a\x01\"@example.com>", false, "control character in address"},
    {Kind::forward, "<\"a\\\x01\"@example.com>", false, "control character in address"},
    {Kind::mailbox, "user@example.com\n", false, "control character in address"},
    {Kind::reverse, "<\x1b[31m@example.com>", false, "control character in address"},
    // Non-ASCII without SMTPUTF8 (RFC 6531 §3.2).
    {Kind::forward, "<j\xc3\xb6ran@example.org>", false, "non-ASCII character without SMTPUTF8"},
    {Kind::forward, "<user@ex\xc3\xa4mple.org>", false, "non-ASCII character without SMTPUTF8"},
    {Kind::forward, "<\"j\xc3\xb6ran\"@example.org>", false,
     "non-ASCII character without SMTPUTF8"},
    {Kind::reverse, "<j\xc3\xb6ran@example.org>", false, "non-ASCII character without SMTPUTF8"},
    {Kind::mailbox, "j\xc3\xb6ran@example.org", false, "non-ASCII character without SMTPUTF8"},
    // Malformed UTF-8, even with SMTPUTF8.
    {Kind::forward, "<\xc0\xafuser@example.org>", true, "invalid UTF-8"},          // overlong '/'
    {Kind::forward, "<\xe0\x80\xafuser@example.org>", true, "invalid UTF-8"},      // overlong
    {Kind::forward, "<\xf0\x80\x80\xafuser@example.org>", true, "invalid UTF-8"},  // overlong
    {Kind::forward, "<\xc1\xbf@example.org>", true, "invalid UTF-8"},              // overlong
    {Kind::forward, "<a\x80@example.org>", true, "invalid UTF-8"},              // lone continuation
    {Kind::forward, "<a@ex\xbf.org>", true, "invalid UTF-8"},                   // lone continuation
    {Kind::forward, "<a\xc3@example.org>", true, "invalid UTF-8"},              // truncated
    {Kind::forward, "<a@example.org\xe2\x82>", true, "invalid UTF-8"},          // truncated
    {Kind::forward, "<a\xed\xa0\x80@example.org>", true, "invalid UTF-8"},      // surrogate
    {Kind::forward, "<a\xf4\x90\x80\x80@example.org>", true, "invalid UTF-8"},  // > U+10FFFF
    {Kind::forward, "<a\xf5\x80\x80\x80@example.org>", true, "invalid UTF-8"},  // F5
    {Kind::forward, "<a\xff@example.org>", true, "invalid UTF-8"},              // FF
    {Kind::forward, "<a\xc2\x85@example.org>", true, "invalid UTF-8"},          // C1 NEL
    {Kind::forward, "<a\xc2\x9b@example.org>", true, "invalid UTF-8"},          // C1 CSI
    {Kind::forward, "<\"a\xc2\x80\"@example.org>", true, "invalid UTF-8"},      // C1 quoted
    {Kind::forward, "<user@[192.0.2.\xc3\xb6]>", true, "invalid IPv4 address literal"},
};

TEST(Address, RefusesInvalidForms) {
  for (const Invalid& v : kInvalid) {
    SCOPED_TRACE(std::string(kind_name(v.kind)) + " " + v.text);
    const Outcome out = run(v.kind, v.text, v.utf8);
    EXPECT_FALSE(out.ok) << "accepted: " << to_string(out.mailbox);
    EXPECT_EQ(out.error, v.error);
  }
}

TEST(Address, NullReversePath) {
  const auto null = parse_reverse_path("<>", false);
  ASSERT_TRUE(null.ok());
  EXPECT_FALSE(null->has_value());
  const auto forward = parse_forward_path("<>", false);
  ASSERT_FALSE(forward.ok());
  EXPECT_EQ(forward.error().message, "null path not allowed as recipient");
}

// What a relay check sees for the classic tricks: the local part carries them verbatim, and
// only the domain after the last unquoted '@' counts.
TEST(Address, HostileFormsAreSeenPlainly) {
  const auto percent = parse_forward_path("<user%remote@local.example>", false);
  ASSERT_TRUE(percent.ok());
  EXPECT_EQ(percent->local_part, "user%remote");
  EXPECT_EQ(percent->domain, "local.example");
  EXPECT_EQ(to_string(percent.value()), "user%remote@local.example");

  const auto routed = parse_forward_path("<@relay.example:user@local.example>", false);
  ASSERT_TRUE(routed.ok());
  EXPECT_EQ(to_string(routed.value()), "user@local.example");

  const auto quoted = parse_forward_path("<\"user@remote.example\"@local.example>", false);
  ASSERT_TRUE(quoted.ok());
  EXPECT_EQ(quoted->local_part, "user@remote.example");
  EXPECT_EQ(quoted->domain, "local.example");
  EXPECT_TRUE(quoted->quoted);
  EXPECT_EQ(to_string(quoted.value()), "\"user@remote.example\"@local.example");

  const auto dotted = parse_forward_path("<user@LOCAL.Example.>", false);
  ASSERT_TRUE(dotted.ok());
  EXPECT_EQ(dotted->domain, "local.example.");
  EXPECT_EQ(normalize_domain(dotted->domain), "local.example");

  const auto literal = parse_forward_path("<user@[192.0.2.1]>", false);
  ASSERT_TRUE(literal.ok());
  EXPECT_TRUE(literal->literal);
  EXPECT_EQ(literal->domain, "[192.0.2.1]");
}

std::string repeat(char c, size_t n) {
  return std::string(n, c);
}

// A domain of exactly n octets made of full labels of 63 octets and one shorter one.
std::string domain_of(size_t n) {
  std::string out;
  while (out.size() + 64 < n) out += repeat('a', 63) + ".";
  out += repeat('b', n - out.size());
  return out;
}

TEST(Address, LocalPartLimit) {
  const std::string local64 = repeat('l', kMaxLocalPart);
  const auto ok = parse_forward_path("<" + local64 + "@example.com>", false);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->local_part, local64);
  const auto too_long = parse_forward_path("<" + local64 + "l@example.com>", false);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message, "local part too long");
  // The limit counts the local part as written, quotes included.
  const std::string quoted64 = "\"" + repeat('q', kMaxLocalPart - 3) + " \"";
  EXPECT_TRUE(parse_mailbox(quoted64 + "@example.com", false).ok());
  const std::string quoted65 = "\"" + repeat('q', kMaxLocalPart - 2) + " \"";
  const auto quoted_long = parse_mailbox(quoted65 + "@example.com", false);
  ASSERT_FALSE(quoted_long.ok());
  EXPECT_EQ(quoted_long.error().message, "local part too long");
  // Multi-octet characters count in octets.
  std::string utf8_64;
  while (utf8_64.size() < kMaxLocalPart) utf8_64 += "\xc3\xb6";
  EXPECT_TRUE(parse_mailbox(utf8_64 + "@example.com", true).ok());
  EXPECT_FALSE(parse_mailbox(utf8_64 + "o@example.com", true).ok());
}

TEST(Address, LabelLimit) {
  const std::string label63 = repeat('d', kMaxLabel);
  const auto ok = parse_forward_path("<u@" + label63 + ".example>", false);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->domain, label63 + ".example");
  const auto too_long = parse_forward_path("<u@" + label63 + "d.example>", false);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message, "domain label too long");
  EXPECT_FALSE(parse_forward_path("<u@example." + label63 + "d>", false).ok());
  EXPECT_TRUE(normalize_domain(label63).has_value());
  EXPECT_FALSE(normalize_domain(label63 + "d").has_value());
}

TEST(Address, DomainLimit) {
  const std::string domain255 = domain_of(kMaxDomain);
  ASSERT_EQ(domain255.size(), 255u);
  const auto ok = parse_mailbox("u@" + domain255, false);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->domain, domain255);
  EXPECT_EQ(normalize_domain(domain255), domain255);

  const std::string domain256 = domain_of(kMaxDomain + 1);
  ASSERT_EQ(domain256.size(), 256u);
  const auto too_long = parse_mailbox("u@" + domain256, false);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message, "domain too long");
  EXPECT_FALSE(normalize_domain(domain256).has_value());
  // The trailing dot counts: 254 octets plus "." is the longest with one.
  EXPECT_TRUE(normalize_domain(domain_of(kMaxDomain - 1) + ".").has_value());
  EXPECT_FALSE(normalize_domain(domain255 + ".").has_value());
}

TEST(Address, PathLimit) {
  // "<" + 64 + "@" + 189 + ">" = 256 octets.
  const std::string local = repeat('l', kMaxLocalPart);
  const std::string path256 = "<" + local + "@" + domain_of(189) + ">";
  ASSERT_EQ(path256.size(), kMaxPath);
  EXPECT_TRUE(parse_forward_path(path256, false).ok());
  EXPECT_TRUE(parse_reverse_path(path256, false).ok());
  const std::string path257 = "<" + local + "@" + domain_of(190) + ">";
  const auto too_long = parse_forward_path(path257, false);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message, "path too long");
  // A source route counts towards the limit.
  const std::string routed = "<@" + domain_of(100) + ":" + local + "@" + domain_of(90) + ">";
  EXPECT_EQ(parse_forward_path(routed, false).error().message, "path too long");
  // The same mailbox bare is within the part limits.
  EXPECT_TRUE(parse_mailbox(local + "@" + domain_of(191), false).ok());
}

TEST(Address, ToStringIsCanonical) {
  EXPECT_EQ(to_string(parse_mailbox("\"john\"@Example.COM", false).value()), "john@example.com");
  EXPECT_EQ(to_string(parse_mailbox("\"a\\b\"@x", false).value()), "ab@x");
  EXPECT_EQ(to_string(parse_mailbox("\"a\\\"b\\\\c\"@x", false).value()), "\"a\\\"b\\\\c\"@x");
  EXPECT_EQ(to_string(parse_mailbox("\"john doe\"@x", false).value()), "\"john doe\"@x");
  EXPECT_EQ(to_string(parse_mailbox("\"a.\"@x", false).value()), "\"a.\"@x");
  EXPECT_EQ(to_string(parse_forward_path("<PostMaster>", false).value()), "postmaster");
  EXPECT_EQ(to_string(parse_forward_path("<u@[IPv6:2001:DB8::1]>", false).value()),
            "u@[IPv6:2001:db8::1]");
  Mailbox built;
  built.local_part = "needs \"quotes\"";
  built.domain = "example.com";
  EXPECT_EQ(to_string(built), "\"needs \\\"quotes\\\"\"@example.com");
}

TEST(Address, IsDotString) {
  EXPECT_TRUE(is_dot_string("a.b.c"));
  EXPECT_TRUE(is_dot_string("user%remote"));
  EXPECT_TRUE(is_dot_string("j\xc3\xb6ran"));
  EXPECT_FALSE(is_dot_string(""));
  EXPECT_FALSE(is_dot_string(".a"));
  EXPECT_FALSE(is_dot_string("a."));
  EXPECT_FALSE(is_dot_string("a..b"));
  EXPECT_FALSE(is_dot_string("a b"));
  EXPECT_FALSE(is_dot_string("a@b"));
}

TEST(Address, NormalizeDomain) {
  EXPECT_EQ(normalize_domain("LOCAL.Example."), "local.example");
  EXPECT_EQ(normalize_domain("local.example"), "local.example");
  EXPECT_EQ(normalize_domain("ex\xc3\xa4mple.ORG"), "ex\xc3\xa4mple.org");
  EXPECT_EQ(normalize_domain("[192.0.2.1]"), "[192.0.2.1]");
  EXPECT_EQ(normalize_domain("[ipv6:2001:DB8:0:0::1]"), "[IPv6:2001:db8::1]");
  EXPECT_EQ(normalize_domain("[IPv6:0:0:0:0:0:ffff:c000:0201]"), "[IPv6:::ffff:192.0.2.1]");
  // Only one trailing dot is stripped, and nothing else is forgiven.
  EXPECT_FALSE(normalize_domain("local.example..").has_value());
  EXPECT_FALSE(normalize_domain("").has_value());
  EXPECT_FALSE(normalize_domain(".").has_value());
  EXPECT_FALSE(normalize_domain(".example").has_value());
  EXPECT_FALSE(normalize_domain("ex ample.com").has_value());
  EXPECT_FALSE(normalize_domain("example.com\r\n").has_value());
  EXPECT_FALSE(normalize_domain("exa\0mple.com"s).has_value());
  EXPECT_FALSE(normalize_domain("ex\xc3"
                                "ample.com")
                   .has_value());
  EXPECT_FALSE(normalize_domain("[192.0.2.1].").has_value());
  EXPECT_FALSE(normalize_domain("[300.0.2.1]").has_value());
  EXPECT_FALSE(normalize_domain("-a.example").has_value());
  EXPECT_FALSE(normalize_domain("user@example.com").has_value());
}

}  // namespace
}  // namespace postern::address
