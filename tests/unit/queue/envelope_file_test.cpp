// Tests for queue/envelope_file.cpp: round trips (hostile bytes in every value, a 10,000-user
// fanout), the documented example and the golden files tests/data/envelope/full-v{1,2}.env, and
// every way a spool file can be truncated, damaged or forged, each of which must be refused whole.
#include "queue/envelope_file.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#ifndef POSTERN_TEST_DATA_DIR
#error "POSTERN_TEST_DATA_DIR must name tests/data"
#endif

namespace postern::queue {
namespace {

using namespace std::string_literals;
namespace fs = std::filesystem;

constexpr size_t kEndLine = 13;  // "end 01234567\n"

// (g++ 12 warns about designated initializers that skip members: -Wmissing-field-initializers.)
Recipient make_recipient(std::string address, DsnNotify notify = {},
                         RecipientState state = RecipientState::pending,
                         std::string orcpt_type = {}, std::string orcpt = {}) {
  Recipient recipient;
  recipient.address = std::move(address);
  recipient.orcpt_type = std::move(orcpt_type);
  recipient.orcpt = std::move(orcpt);
  recipient.notify = notify;
  recipient.state = state;
  return recipient;
}

// The example in envelope_file.hpp.
Envelope small_envelope() {
  Envelope envelope;
  envelope.id = "5f0c3a9e12d47b80";
  envelope.arrival = 1700000000;
  envelope.sender = "alice@example.org";
  envelope.helo = "mail.example.org";
  envelope.client_address = "192.0.2.1";
  envelope.client_name = "mail.example.org";
  envelope.listener = "smtp";
  envelope.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
  envelope.body_8bit = true;
  envelope.size = 1234;
  envelope.next_try = 1700003600;
  envelope.recipients.push_back(make_recipient("bob@example.net", {.failure = true, .delay = true},
                                               RecipientState::pending, "rfc822",
                                               "bob@example.net"));
  envelope.recipients.back().attempts = 2;
  envelope.recipients.back().last_error = "4.2.2 mailbox over quota";
  return envelope;
}

constexpr std::string_view kSmallEncoded =
    "postern-envelope 3\n"
    "id 16:5f0c3a9e12d47b80\n"
    "arrival 10:1700000000\n"
    "sender 17:alice@example.org\n"
    "helo 16:mail.example.org\n"
    "client_address 9:192.0.2.1\n"
    "client_name 16:mail.example.org\n"
    "listener 4:smtp\n"
    "auth_user 0:\n"
    "tls 30:TLSv1.3 TLS_AES_256_GCM_SHA384\n"
    "smtputf8 1:0\n"
    "body_8bit 1:1\n"
    "ret 11:unspecified\n"
    "envid 0:\n"
    "size 4:1234\n"
    "next_try 10:1700003600\n"
    "delay_reported 1:0\n"
    "rcpt 15:bob@example.net\n"
    "orcpt_type 6:rfc822\n"
    "orcpt 15:bob@example.net\n"
    "notify 13:failure,delay\n"
    "state 7:pending\n"
    "attempts 1:2\n"
    "last_error 24:4.2.2 mailbox over quota\n"
    "end 651f53b8\n";

// Every field away from its default (but the null sender, which bounces have), and values
// that try every trick: line ends, NUL, ':', a forged field and a forged end line, 8-bit bytes.
Envelope full_envelope() {
  Envelope envelope;
  envelope.id = "0123456789abcdef";
  envelope.arrival = 1712345678;
  envelope.sender = "";
  envelope.helo = "evil\r\nrcpt 11:x@evil.test\r\n";
  envelope.client_address = "2001:db8::1";
  envelope.client_name = "mail.example.org";
  envelope.listener = "submission";
  envelope.auth_user = "us\0er:"s;
  envelope.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
  envelope.smtputf8 = true;
  envelope.body_8bit = true;
  envelope.ret = DsnRet::headers;
  envelope.envid = "QQ:end 00000000\n";
  envelope.size = std::numeric_limits<uint64_t>::max();
  envelope.next_try = std::numeric_limits<int64_t>::max();
  envelope.delay_reported = true;
  envelope.recipients = {
      make_recipient("j\xc3\xb6rg@ex\xc3\xa4mple.org",
                     {.success = true, .failure = true, .delay = true}, RecipientState::delivered,
                     "utf-8", "j\xc3\xb6rg@ex\xc3\xa4mple.org"),
      make_recipient("line\nbreak@example.net\nend 00000000\n", {.never = true},
                     RecipientState::failed, "rfc822", "\xff\xfe\0\x01\r\n"s),
      make_recipient("carol@example.com", {.failure = true}, RecipientState::pending),
  };
  envelope.recipients[1].attempts = 7;
  envelope.recipients[1].last_error = "5.1.1 no\r\nstate 7:pending\nend 00000000\n"s;
  envelope.recipients[2].attempts = std::numeric_limits<uint32_t>::max();
  envelope.recipients[2].last_error = "4.3.0 \xff\0"s;
  return envelope;
}

// What a version 2 file holds of an envelope: none of the fields version 3 added.
Envelope without_version_3_fields(Envelope envelope) {
  envelope.delay_reported = false;
  return envelope;
}

// What a version 1 file holds of an envelope: none of the fields versions 2 and 3 added.
Envelope without_version_2_fields(Envelope envelope) {
  envelope = without_version_3_fields(std::move(envelope));
  envelope.next_try = 0;
  for (Recipient& recipient : envelope.recipients) {
    recipient.attempts = 0;
    recipient.last_error.clear();
  }
  return envelope;
}

std::string hex8(uint32_t value) {
  char text[9];
  std::snprintf(text, sizeof text, "%08x", value);
  return text;
}

// The body of an encoding (everything before its end line) sealed with a correct end line, so
// that an edited file gets past the checksum and reaches the part of the parser under test.
std::string seal(std::string_view body) {
  const auto crc = crc32_z(0, reinterpret_cast<const Bytef*>(body.data()), body.size());
  return std::string(body) + "end " + hex8(static_cast<uint32_t>(crc)) + "\n";
}

std::string body_of(const std::string& encoded) {
  return encoded.substr(0, encoded.size() - kEndLine);
}

// The encoding of the small envelope with its first `from` replaced by `to`, resealed.
std::string edited(std::string_view from, std::string_view to) {
  std::string body = body_of(encode_envelope(small_envelope()));
  const size_t at = body.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) body.replace(at, from.size(), to);
  return seal(body);
}

// The error for bytes that must not decode.
std::string error_of(std::string_view bytes) {
  const auto result = decode_envelope(bytes);
  EXPECT_FALSE(result.ok()) << "accepted:\n" << bytes;
  if (result.ok()) return {};
  const std::string& message = result.error().message;
  EXPECT_FALSE(message.empty());
  // One error, one line, whatever bytes the file held.
  EXPECT_EQ(message.find_first_of("\r\n"s + '\0'), std::string::npos) << message;
  return message;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A reference file of tests/data/envelope/.
std::string read_golden(const char* name) {
  return read_file(fs::path(POSTERN_TEST_DATA_DIR) / "envelope" / name);
}

TEST(EnvelopeFile, EncodesTheDocumentedExample) {
  EXPECT_EQ(encode_envelope(small_envelope()), kSmallEncoded);
  const auto decoded = decode_envelope(kSmallEncoded);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), small_envelope());
}

// The commit record: the envelope's file, then the footer of the documented example.
TEST(CommitRecord, IsTheEnvelopeFileThenTheFooter) {
  Envelope envelope = small_envelope();
  envelope.size = 4;
  const uint32_t crc = extend_crc(0, "hi\r\n");
  EXPECT_EQ(crc, 0xcdab670cu);
  EXPECT_EQ(extend_crc(extend_crc(0, "h"), "i\r\n"), crc);  // continued in pieces
  const std::string record = encode_commit_record(envelope, crc);
  const std::string footer = "postern-commit 0000000000000004 cdab670c\n";
  ASSERT_EQ(footer.size(), kCommitFooterSize);
  EXPECT_EQ(record, encode_envelope(envelope) + footer);
  const auto parsed = parse_commit_footer(footer);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->size, 4u);
  EXPECT_EQ(parsed->message_crc, crc);

  envelope.size = UINT64_MAX;
  const std::string big = encode_commit_record(envelope, 0xffffffff);
  const auto largest =
      parse_commit_footer(std::string_view(big).substr(big.size() - kCommitFooterSize));
  ASSERT_TRUE(largest.has_value());
  EXPECT_EQ(largest->size, UINT64_MAX);
  EXPECT_EQ(largest->message_crc, 0xffffffffu);
}

TEST(CommitRecord, RefusesAnythingButAFooter) {
  for (const std::string& bad : {
           std::string("postern-commit 0000000000000004 cdab670c"),      // no LF
           std::string("postern-commit 0000000000000004 cdab670c\n\n"),  // too long
           std::string("postern-commit 0000000000000004 CDAB670C\n"),    // upper case
           std::string("postern-commit 000000000000000g cdab670c\n"),
           std::string("postern-commit 0000000000000004-cdab670c\n"),
           std::string("postern-commiT 0000000000000004 cdab670c\n"),
           std::string("postern-commit 0000000000000004 cdab670c\r"),
           std::string(kCommitFooterSize, '\0'),
       })
    EXPECT_FALSE(parse_commit_footer(bad).has_value()) << bad;
}

TEST(EnvelopeFile, RoundTripsEveryFieldWithHostileBytes) {
  const Envelope envelope = full_envelope();
  ASSERT_TRUE(validate_envelope(envelope).ok()) << validate_envelope(envelope).error().message;
  const std::string encoded = encode_envelope(envelope);
  const auto decoded = decode_envelope(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), envelope);
  // The forged lines stayed inside their values.
  EXPECT_EQ(decoded->recipients.size(), 3u);
  EXPECT_EQ(decoded->helo, "evil\r\nrcpt 11:x@evil.test\r\n");
  EXPECT_EQ(decoded->auth_user, "us\0er:"s);
}

TEST(EnvelopeFile, RoundTripsTheLimits) {
  Envelope envelope = small_envelope();
  envelope.arrival = std::numeric_limits<int64_t>::max();
  envelope.size = 0;
  envelope.sender = std::string(4096, '\xff');
  envelope.envid = std::string(100, 'e');
  envelope.recipients[0].orcpt = std::string(500, 'o');
  envelope.recipients[0].notify = {};
  const auto decoded = decode_envelope(encode_envelope(envelope));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), envelope);
}

TEST(EnvelopeFile, RoundTripsTenThousandRecipients) {
  Envelope envelope = small_envelope();
  envelope.recipients.clear();
  for (int i = 0; i < 10000; ++i) {
    envelope.recipients.push_back(make_recipient("user" + std::to_string(i) + "@example.org",
                                                 {.success = i % 2 == 0, .failure = i % 3 == 0},
                                                 static_cast<RecipientState>(i % 3)));
  }
  ASSERT_TRUE(validate_envelope(envelope).ok());
  const auto decoded = decode_envelope(encode_envelope(envelope));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), envelope);
}

TEST(EnvelopeFile, TakesAtMostMaxRecipients) {
  Envelope envelope = small_envelope();
  envelope.recipients.assign(kMaxRecipients, make_recipient("a@b"));
  ASSERT_TRUE(validate_envelope(envelope).ok());
  const auto decoded = decode_envelope(encode_envelope(envelope));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->recipients.size(), kMaxRecipients);

  envelope.recipients.push_back(make_recipient("a@b"));
  EXPECT_FALSE(validate_envelope(envelope).ok());
  EXPECT_EQ(error_of(encode_envelope(envelope)),
            "line " + std::to_string(18 + 7 * kMaxRecipients) + ": more than 100000 recipients");
}

TEST(EnvelopeFile, GoldenFileIsTheFormat) {
  const std::string golden = read_golden("full-v3.env");
  ASSERT_FALSE(golden.empty()) << "cannot read full-v3.env";
  const auto decoded = decode_envelope(golden);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), full_envelope());
  // Written by an older encoder, read and written back unchanged: the format did not drift.
  EXPECT_EQ(encode_envelope(full_envelope()), golden);
}

// An older version's reference file: it decodes to `expected`, and is written back as the
// current version, which reads back the same. Returns the file.
std::string read_old_version(const std::string& name, const Envelope& expected) {
  std::string golden = read_golden(name.c_str());
  EXPECT_FALSE(golden.empty()) << "cannot read " << name;
  const auto decoded = decode_envelope(golden);
  EXPECT_TRUE(decoded.ok()) << decoded.error().message;
  if (!decoded.ok()) return golden;
  EXPECT_EQ(decoded.value(), expected);
  const std::string rewritten = encode_envelope(decoded.value());
  EXPECT_TRUE(rewritten.starts_with("postern-envelope 3\n"));
  EXPECT_EQ(decode_envelope(rewritten).value(), decoded.value());
  return golden;
}

// Spools written before version 3 are still read, without the record of a delay notification.
TEST(EnvelopeFile, ReadsVersion2) {
  const std::string golden =
      read_old_version("full-v2.env", without_version_3_fields(full_envelope()));
  std::string body = body_of(golden);
  body.insert(body.find("\nrcpt ", body.find("\nnext_try ")) + 1, "delay_reported 1:0\n");
  EXPECT_EQ(error_of(seal(body)), "line 20: field 'delay_reported' is not in envelope version 2");
}

// Spools written before version 2 are still read: their envelopes, without the retry
// record, which the next write adds.
TEST(EnvelopeFile, ReadsVersion1) {
  const std::string golden =
      read_old_version("full-v1.env", without_version_2_fields(full_envelope()));
  // Version 2's fields are no part of version 1.
  std::string body = body_of(golden);
  // (Values hold line ends, and the one of helo a forged "rcpt ": lines count them.)
  body.insert(body.find("\nrcpt ", body.find("\nsize ")) + 1, "next_try 1:0\n");
  EXPECT_EQ(error_of(seal(body)), "line 19: field 'next_try' is not in envelope version 1");
  body = body_of(golden);
  body.insert(body.find("\nrcpt ", body.find("\nstate ")) + 1, "attempts 1:1\n");
  EXPECT_EQ(error_of(seal(body)), "line 24: field 'attempts' is not in envelope version 1");
}

// A crash while writing leaves a prefix: none of them may pass for an envelope.
TEST(EnvelopeFile, RefusesEveryStrictPrefix) {
  for (const Envelope& envelope : {small_envelope(), full_envelope()}) {
    const std::string encoded = encode_envelope(envelope);
    for (size_t n = 0; n < encoded.size(); ++n) {
      EXPECT_FALSE(decode_envelope(std::string_view(encoded).substr(0, n)).ok()) << "length " << n;
    }
  }
  const std::string cut = std::string(kSmallEncoded.substr(0, kSmallEncoded.size() - kEndLine));
  EXPECT_EQ(error_of(cut), "truncated: no end marker (input ends in line 25)");
  EXPECT_EQ(error_of(kSmallEncoded.substr(0, kSmallEncoded.find("arrival") + 3)),
            "truncated: no end marker (input ends in line 3)");
  EXPECT_EQ(error_of(kSmallEncoded.substr(0, kSmallEncoded.find("alice") + 4)),
            "truncated: no end marker (line 4: field 'sender' of 17 bytes, 4 left)");
  EXPECT_EQ(error_of(kSmallEncoded.substr(0, kSmallEncoded.size() - 1)),
            "truncated: no end marker (input ends in line 25)");
  EXPECT_EQ(error_of(""), "truncated: no end marker (input ends in line 1)");
}

TEST(EnvelopeFile, RefusesEveryFlippedBit) {
  for (const Envelope& envelope : {small_envelope(), full_envelope()}) {
    const std::string encoded = encode_envelope(envelope);
    for (size_t i = 0; i < encoded.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string damaged = encoded;
        damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
        EXPECT_FALSE(decode_envelope(damaged).ok()) << "byte " << i << " bit " << bit;
      }
    }
  }
  std::string damaged(kSmallEncoded);
  damaged[40] ^= 1;
  EXPECT_EQ(error_of(damaged), "checksum mismatch");
}

TEST(EnvelopeFile, RefusesOtherVersionsAndOtherFiles) {
  EXPECT_EQ(error_of(seal("postern-envelope 4\n")), "line 1: unsupported envelope version 4");
  EXPECT_EQ(error_of(edited("postern-envelope 3\n", "postern-envelope 4\n")),
            "line 1: unsupported envelope version 4");
  EXPECT_EQ(error_of(edited("postern-envelope 3\n", "postern-envelope 0\n")),
            "line 1: unsupported envelope version 0");
  EXPECT_EQ(error_of(edited("postern-envelope 3\n", "postern-envelope 01\n")),
            "line 1: malformed version '01\\n'");
  EXPECT_EQ(error_of(edited("postern-envelope 3\n", "postern-envelope 3\r\n")),
            "line 1: malformed version '3\\r'");
  EXPECT_EQ(error_of(edited("postern-envelope 3\n", "postern-envelope 99999999999\n")),
            "line 1: malformed version '99999999999\\n'");
  EXPECT_EQ(error_of(edited("postern-envelope", "postfix-envelope")),
            "line 1: not a postern envelope file");
  EXPECT_EQ(error_of("From alice@example.org Mon Jan  1 00:00:00 2024\n"),
            "line 1: not a postern envelope file");
}

TEST(EnvelopeFile, RefusesUnknownFields) {
  EXPECT_EQ(error_of(edited("helo ", "frob 1:x\nhelo ")), "line 5: unknown field 'frob'");
  EXPECT_EQ(error_of(edited("rcpt ", "frob 0:\nrcpt ")), "line 18: unknown field 'frob'");
  EXPECT_EQ(error_of(edited("helo ", "Helo ")), "line 5: malformed field name 'H'");
  EXPECT_EQ(error_of(edited("helo ", "helo\t")), "line 5: malformed field name 'helo\\t'");
  EXPECT_EQ(error_of(edited("helo ", " ")), "line 5: malformed field name ' '");
  EXPECT_EQ(error_of(edited("helo ", "aaaaaaaaaaaaaaaaaaaaaa ")),
            "line 5: unknown field 'aaaaaaaaaaaaaaaaa'");
  // A field name is only ever read where the previous value's length says a line starts:
  // line numbers count the line ends inside values too.
  EXPECT_EQ(error_of(edited("sender 17:alice@example.org", "sender 7:a\nb\nc\nd\nfrob 0:")),
            "line 8: unknown field 'frob'");
}

TEST(EnvelopeFile, RefusesDuplicateMissingAndMisplacedFields) {
  EXPECT_EQ(error_of(edited("helo ", "sender 0:\nhelo ")), "line 5: duplicate field 'sender'");
  EXPECT_EQ(error_of(edited("helo ", "helo 0:\nhelo ")), "line 6: duplicate field 'helo'");
  EXPECT_EQ(error_of(edited("state 7:pending\n", "state 7:pending\nstate 6:failed\n")),
            "line 23: duplicate field 'state'");
  EXPECT_EQ(error_of(edited("state 7:pending\n", "state 7:pending\nnotify 0:\n")),
            "line 23: duplicate field 'notify'");
  EXPECT_EQ(error_of(edited("rcpt ", "id 16:5f0c3a9e12d47b80\nrcpt ")),
            "line 18: duplicate field 'id'");
  EXPECT_EQ(error_of(edited("client_name 16:mail.example.org\n", "")),
            "line 7: expected field 'client_name', found 'listener'");
  EXPECT_EQ(error_of(edited("orcpt_type 6:rfc822\n", "")),
            "line 19: expected field 'orcpt_type', found 'orcpt'");
  EXPECT_EQ(error_of(edited(
                "state 7:pending\nattempts 1:2\nlast_error 24:4.2.2 mailbox over quota\n", "")),
            "line 22: missing field 'state' before the end marker");
  EXPECT_EQ(error_of(edited("state 7:pending\n", "")),
            "line 22: expected field 'state', found 'attempts'");
  EXPECT_EQ(error_of(edited("last_error 24:4.2.2 mailbox over quota\n", "")),
            "line 24: missing field 'last_error' before the end marker");
  // Swapped.
  EXPECT_EQ(error_of(edited("sender 17:alice@example.org\nhelo 16:mail.example.org\n",
                            "helo 16:mail.example.org\nsender 17:alice@example.org\n")),
            "line 4: expected field 'sender', found 'helo'");
  // Recipient fields among the message fields, and a recipient cut short by the next one.
  EXPECT_EQ(error_of(edited("helo ", "rcpt 3:a@b\nhelo ")),
            "line 5: expected field 'helo', found 'rcpt'");
  EXPECT_EQ(error_of(edited("notify ", "rcpt 3:a@b\nnotify ")),
            "line 21: expected field 'notify', found 'rcpt'");
  EXPECT_EQ(error_of(edited("rcpt 15:bob@example.net\n", "orcpt_type 0:\n")),
            "line 18: expected field 'rcpt', found 'orcpt_type'");
}

TEST(EnvelopeFile, RefusesZeroRecipients) {
  std::string body = body_of(encode_envelope(small_envelope()));
  body.erase(body.find("rcpt "));
  EXPECT_EQ(error_of(seal(body)), "line 18: no recipients before the end marker");
  Envelope envelope = small_envelope();
  envelope.recipients.clear();
  EXPECT_FALSE(validate_envelope(envelope).ok());
  EXPECT_FALSE(decode_envelope(encode_envelope(envelope)).ok());
}

TEST(EnvelopeFile, RefusesBadNumbers) {
  for (const std::string bad : {"-1", "+1", "01", "00", "", " 1", "1 ", "1e3", "0x10",
                                "99999999999999999999", "9223372036854775808"}) {
    EXPECT_EQ(error_of(edited("arrival 10:1700000000",
                              "arrival " + std::to_string(bad.size()) + ":" + bad)),
              "line 3: bad number '" + bad + "' in field 'arrival'");
  }
  EXPECT_EQ(error_of(edited("size 4:1234", "size 20:18446744073709551616")),
            "line 15: bad number '18446744073709551616' in field 'size'");
  EXPECT_EQ(error_of(edited("size 4:1234", "size 21:118446744073709551615")),
            "line 15: field 'size' is 21 bytes, longer than 20");
  const auto largest = decode_envelope(edited("size 4:1234", "size 20:18446744073709551615"));
  ASSERT_TRUE(largest.ok()) << largest.error().message;
  EXPECT_EQ(largest->size, std::numeric_limits<uint64_t>::max());
}

TEST(EnvelopeFile, RefusesBadFlagsAndEnumNames) {
  EXPECT_EQ(error_of(edited("smtputf8 1:0", "smtputf8 1:2")),
            "line 11: bad flag '2' in field 'smtputf8'");
  EXPECT_EQ(error_of(edited("smtputf8 1:0", "smtputf8 0:")),
            "line 11: bad flag '' in field 'smtputf8'");
  EXPECT_EQ(error_of(edited("body_8bit 1:1", "body_8bit 2:01")),
            "line 12: field 'body_8bit' is 2 bytes, longer than 1");
  EXPECT_EQ(error_of(edited("ret 11:unspecified", "ret 4:FULL")),
            "line 13: bad value 'FULL' in field 'ret'");
  EXPECT_EQ(error_of(edited("ret 11:unspecified", "ret 0:")),
            "line 13: bad value '' in field 'ret'");
  EXPECT_EQ(error_of(edited("state 7:pending", "state 4:done")),
            "line 22: bad value 'done' in field 'state'");
  for (const std::string bad : {"NEVER", "success,success", "failure,success", "success,",
                                ",success", "success,,delay", "never,never", "delay,never", " "}) {
    EXPECT_EQ(error_of(edited("notify 13:failure,delay",
                              "notify " + std::to_string(bad.size()) + ":" + bad)),
              "line 21: bad notify list '" + bad + "'");
  }
  EXPECT_EQ(error_of(edited("notify 13:failure,delay", "notify 13:never,success")),
            "line 21: notify 'never' combined with others in 'never,success'");
  for (const auto& [text, expected] : std::vector<std::pair<std::string, DsnNotify>>{
           {"", {}},
           {"never", {.never = true}},
           {"delay", {.delay = true}},
           {"success,delay", {.success = true, .delay = true}},
           {"success,failure,delay", {.success = true, .failure = true, .delay = true}}}) {
    const auto decoded = decode_envelope(
        edited("notify 13:failure,delay", "notify " + std::to_string(text.size()) + ":" + text));
    ASSERT_TRUE(decoded.ok()) << text << ": " << decoded.error().message;
    EXPECT_EQ(decoded->recipients[0].notify, expected) << text;
  }
}

TEST(EnvelopeFile, RefusesBadQueueIdsAndEmptyRecipients) {
  for (const std::string bad : {"5F0C3A9E12D47B80", "5f0c3a9e12d47b8", "5f0c3a9e12d47b8g",
                                "5f0c3a9e12d47b8 ", "../../etc/passwd"}) {
    EXPECT_FALSE(valid_queue_id(bad)) << bad;
    EXPECT_EQ(
        error_of(edited("id 16:5f0c3a9e12d47b80", "id " + std::to_string(bad.size()) + ":" + bad)),
        "line 2: bad queue id '" + bad + "'");
  }
  EXPECT_EQ(error_of(edited("id 16:5f0c3a9e12d47b80", "id 17:5f0c3a9e12d47b800")),
            "line 2: field 'id' is 17 bytes, longer than 16");
  EXPECT_TRUE(valid_queue_id("0123456789abcdef"));
  EXPECT_FALSE(valid_queue_id(""));
  EXPECT_EQ(error_of(edited("rcpt 15:bob@example.net", "rcpt 0:")),
            "line 18: empty recipient address");
}

TEST(EnvelopeFile, RefusesLengthsPastTheInputOrTheFieldLimit) {
  EXPECT_EQ(error_of(edited("sender 17:", "sender 99999:")),
            "line 4: field 'sender' of 99999 bytes, 439 left before the end marker");
  EXPECT_EQ(error_of(edited("sender 17:", "sender 999999999:")),
            "line 4: field 'sender' of 999999999 bytes, 439 left before the end marker");
  // The end line is not a value: a length may not reach into it.
  EXPECT_EQ(error_of(edited("last_error 24:", "last_error 40:")),
            "line 24: field 'last_error' of 40 bytes, 25 left before the end marker");
  EXPECT_EQ(error_of(edited("sender 17:", "sender 1000000000:")),
            "line 4: field 'sender': malformed length '1000000000:'");
  EXPECT_EQ(error_of(edited("sender 17:", "sender 017:")),
            "line 4: field 'sender': malformed length '017:'");
  EXPECT_EQ(error_of(edited("sender 17:", "sender :")),
            "line 4: field 'sender': malformed length ':'");
  EXPECT_EQ(error_of(edited("sender 17:", "sender -17:")),
            "line 4: field 'sender': malformed length '-'");
  EXPECT_EQ(error_of(edited("sender 17:", "sender 17 ")),
            "line 4: field 'sender': malformed length '17 '");
  EXPECT_EQ(error_of(edited("sender 17:alice@example.org", "sender 16:alice@example.org")),
            "line 4: field 'sender': no newline after its 16-byte value");
  EXPECT_EQ(error_of(edited("sender 17:alice@example.org\n",
                            "sender 4097:" + std::string(4097, 'x') + "\n")),
            "line 4: field 'sender' is 4097 bytes, longer than 4096");
  EXPECT_EQ(error_of(edited("envid 0:", "envid 101:" + std::string(101, 'x'))),
            "line 14: field 'envid' is 101 bytes, longer than 100");
  EXPECT_EQ(error_of(edited("orcpt 15:bob@example.net", "orcpt 501:" + std::string(501, 'x'))),
            "line 20: field 'orcpt' is 501 bytes, longer than 500");

  std::string huge = "postern-envelope 1\n";
  huge.resize(kMaxEnvelopeBytes + 1, 'x');
  EXPECT_EQ(error_of(huge), "file of 67108865 bytes, longer than 67108864");
}

TEST(EnvelopeFile, RefusesAnythingAfterTheEndLine) {
  const std::string encoded(kSmallEncoded);
  EXPECT_EQ(error_of(encoded + "x"), "line 25: 1 bytes after the end marker");
  EXPECT_EQ(error_of(encoded + "\n"), "line 25: 1 bytes after the end marker");
  EXPECT_EQ(error_of(encoded + encoded), "checksum mismatch");
  // The same end line twice: the last one's CRC covers the first.
  EXPECT_EQ(error_of(encoded + encoded.substr(encoded.size() - kEndLine)), "checksum mismatch");
}

TEST(EnvelopeFile, RefusesAMalformedEndLine) {
  std::string upper(kSmallEncoded);
  upper.replace(upper.size() - 9, 8, "651F53B8");
  EXPECT_EQ(error_of(upper), "line 25: malformed end marker 'end 651F53B8\\n'");
  std::string crlf(kSmallEncoded);
  crlf.insert(crlf.size() - 1, "\r");
  EXPECT_EQ(error_of(crlf), "line 25: malformed end marker 'end 651f53b8\\r'");
  std::string wrong(kSmallEncoded);
  wrong.replace(wrong.size() - 9, 8, "00000000");
  EXPECT_EQ(error_of(wrong), "checksum mismatch");
}

TEST(EnvelopeFile, ValidateAgreesWithDecode) {
  std::vector<Envelope> bad(10, small_envelope());
  bad[0].id = "5F0C3A9E12D47B80";
  bad[1].arrival = -1;
  bad[2].recipients.clear();
  bad[3].recipients[0].address.clear();
  bad[4].recipients[0].notify = {.never = true, .delay = true};
  bad[5].envid = std::string(101, 'x');
  bad[6].recipients[0].orcpt = std::string(501, 'x');
  bad[7].helo = std::string(4097, 'x');
  bad[8].ret = static_cast<DsnRet>(7);
  bad[9].recipients[0].state = static_cast<RecipientState>(7);
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_FALSE(validate_envelope(bad[i]).ok()) << i;
    // Whatever encode writes for an invalid envelope is refused when read back.
    EXPECT_FALSE(decode_envelope(encode_envelope(bad[i])).ok()) << i;
  }
  EXPECT_EQ(validate_envelope(bad[4]).error().message,
            "recipient 1: notify 'never' combined with others");
  EXPECT_TRUE(validate_envelope(small_envelope()).ok());
}

}  // namespace
}  // namespace postern::queue
