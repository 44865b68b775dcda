// Credentials table: real hashes made here with libxcrypt for each accepted scheme, every
// refused scheme named with its file and line, and the bounds on lines, names and files.
#include "lookup/credentials.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace postern::lookup {
namespace {

using namespace std::string_literals;

// A fresh salt and a real hash, so the test never trusts a string it cannot check. Costs are
// the cheapest the scheme allows in a sensible range, to keep the suite fast.
std::string make_hash(const char* prefix, unsigned long cost, const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn(prefix, cost, nullptr, 0, setting, sizeof setting) == nullptr) {
    ADD_FAILURE() << "crypt_gensalt_rn failed for " << prefix;
    return {};
  }
  const auto data = std::make_unique<crypt_data>();
  const char* const out = crypt_rn(password.c_str(), setting, data.get(), sizeof *data);
  if (out == nullptr) {
    ADD_FAILURE() << "crypt_rn failed for " << setting;
    return {};
  }
  return out;
}

struct Scheme {
  const char* name;
  const char* prefix;
  unsigned long cost;
};
void PrintTo(const Scheme& scheme, std::ostream* os) {
  *os << scheme.name;
}

// bcrypt at its minimum cost 4, sha512-crypt at its default 5000 rounds, yescrypt at cost 1.
const Scheme kSchemes[] = {
    {"bcrypt", "$2b$", 4},   {"bcrypt_2y", "$2y$", 4}, {"sha512", "$6$", 5000},
    {"sha256", "$5$", 5000}, {"yescrypt", "$y$", 1},
};

CredentialTable parse_ok(const std::string& text) {
  auto result = CredentialTable::parse(text, "users.txt");
  if (!result.ok()) {
    std::string all;
    for (const auto& error : result.error()) all += error.to_string() + "\n";
    ADD_FAILURE() << all;
  }
  return std::move(result).value();
}

std::vector<std::string> parse_errors(const std::string& text) {
  const auto result = CredentialTable::parse(text, "users.txt");
  std::vector<std::string> out;
  if (result.ok()) return out;
  for (const auto& error : result.error()) out.push_back(error.to_string());
  return out;
}

class PerScheme : public ::testing::TestWithParam<Scheme> {};

TEST_P(PerScheme, RightPasswordOnly) {
  const Scheme& scheme = GetParam();
  const std::string hash = make_hash(scheme.prefix, scheme.cost, "correct horse");
  const CredentialTable table = parse_ok(
      "alice:" + hash + "\nbob:" + make_hash(scheme.prefix, scheme.cost, "battery") + "\n");
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.verify("alice", "correct horse"));
  EXPECT_TRUE(table.verify("bob", "battery"));
  EXPECT_FALSE(table.verify("alice", "correct horsE"));
  EXPECT_FALSE(table.verify("alice", "correct hors"));
  EXPECT_FALSE(table.verify("alice", "correct horse "));
  EXPECT_FALSE(table.verify("alice", ""));
  EXPECT_FALSE(table.verify("alice", "battery"));  // bob's password is not alice's
  EXPECT_FALSE(table.verify("Alice", "correct horse"));
  EXPECT_FALSE(table.verify("", "correct horse"));
  // An unknown user with a password that is valid for someone (the dummy may be a copy of
  // a real entry) still fails.
  EXPECT_FALSE(table.verify("carol", "correct horse"));
  EXPECT_FALSE(table.verify("carol", "battery"));
}

TEST_P(PerScheme, NulNeverTruncates) {
  const Scheme& scheme = GetParam();
  const CredentialTable table =
      parse_ok("alice:" + make_hash(scheme.prefix, scheme.cost, "pw") + "\n");
  ASSERT_TRUE(table.verify("alice", "pw"));
  EXPECT_FALSE(table.verify("alice", "pw\0junk"s));
  EXPECT_FALSE(table.verify("alice", "pw\0"s));
  EXPECT_FALSE(table.verify("alice\0x"s, "pw"));
  EXPECT_FALSE(table.verify("alice\0"s, "pw"));
}

INSTANTIATE_TEST_SUITE_P(Schemes, PerScheme, ::testing::ValuesIn(kSchemes),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(CredentialTable, MixedSchemesAndUnknownUsers) {
  const CredentialTable table = parse_ok(
      "a:" + make_hash("$2b$", 4, "one") + "\nb:" + make_hash("$6$", 5000, "two") +
      "\nc:" + make_hash("$y$", 1, "three") + "\nd:" + make_hash("$2b$", 4, "four") + "\n");
  EXPECT_TRUE(table.verify("a", "one"));
  EXPECT_TRUE(table.verify("b", "two"));
  EXPECT_TRUE(table.verify("c", "three"));
  EXPECT_TRUE(table.verify("d", "four"));
  EXPECT_FALSE(table.verify("b", "one"));
  for (const char* password : {"one", "two", "three", "four", ""})
    EXPECT_FALSE(table.verify("nobody", password));
}

// Dovecot's passwd-file lines: a {SCHEME} prefix naming a crypt(3) scheme, and Dovecot's own
// fields after the hash.
TEST(CredentialTable, DovecotPrefixedHashes) {
  const CredentialTable table =
      parse_ok("a:{SHA512-CRYPT}" + make_hash("$6$", 5000, "one") + "\nb:{BLF-CRYPT}" +
               make_hash("$2b$", 4, "two") + "::::::\nc:{crypt}" + make_hash("$y$", 1, "three") +
               ":1000:1000::/home/c::\nd:{SHA256-CRYPT}" + make_hash("$5$", 5000, "four") + "\n");
  EXPECT_TRUE(table.verify("a", "one"));
  EXPECT_TRUE(table.verify("b", "two"));
  EXPECT_TRUE(table.verify("c", "three"));
  EXPECT_TRUE(table.verify("d", "four"));
  EXPECT_FALSE(table.verify("a", "two"));
  EXPECT_FALSE(table.verify("c", ""));
}

TEST(CredentialTable, DovecotPrefixesThatDoNotHold) {
  EXPECT_EQ(parse_errors("a:{SHA512-CRYPT}" + make_hash("$2b$", 4, "pw") + "\n"),
            std::vector<std::string>{"users.txt:1: user 'a': the hash is not of the scheme its "
                                     "{SHA512-CRYPT} prefix names"});
  EXPECT_EQ(parse_errors("a:{PLAIN}secret\n"),
            std::vector<std::string>{
                "users.txt:1: user 'a': refused hash scheme: a Dovecot scheme other than "
                "{SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT} or {CRYPT} (use bcrypt, "
                "sha512-crypt or yescrypt)"});
  EXPECT_EQ(parse_errors("a:{SHA512-CRYPT\n"),
            std::vector<std::string>{"users.txt:1: user 'a': malformed {SCHEME} prefix"});
  // A prefix does not make a weak hash acceptable.
  EXPECT_EQ(parse_errors("a:{CRYPT}$1$salt$abcdefghijklmnopqrstuv\n").size(), 1u);
}

TEST(CredentialTable, EmptyTableVerifiesNobody) {
  const CredentialTable table = parse_ok("# no users yet\n\n");
  EXPECT_EQ(table.size(), 0u);
  EXPECT_FALSE(table.verify("alice", "anything"));
  EXPECT_FALSE(table.verify("", ""));
}

TEST(CredentialTable, OverlongPasswordFails) {
  const CredentialTable table = parse_ok("alice:" + make_hash("$6$", 5000, "pw") + "\n");
  EXPECT_FALSE(table.verify("alice", std::string(100000, 'x')));
  EXPECT_FALSE(table.verify("alice", "pw" + std::string(600, 'x')));
}

TEST(CredentialTable, CommentsAndBlankLines) {
  const std::string hash = make_hash("$2b$", 4, "pw");
  const CredentialTable table = parse_ok(
      "# users for example.org\n\n   \n\t\n  # indented comment\n#alice:plaintext\nalice:" + hash +
      "\n\n# trailing comment");
  EXPECT_EQ(table.size(), 1u);
  EXPECT_TRUE(table.verify("alice", "pw"));
  EXPECT_EQ(parse_ok("").size(), 0u);
}

TEST(CredentialTable, CrlfLineEndings) {
  const std::string hash = make_hash("$2b$", 4, "pw");
  const CredentialTable table = parse_ok("# comment\r\nalice:" + hash + "\r\nbob:" + hash + "\r\n");
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.verify("alice", "pw"));
  EXPECT_TRUE(table.verify("bob", "pw"));
  // Only one CR is a line ending; a last line without any ending is fine.
  EXPECT_EQ(parse_errors("alice:" + hash + "\r\r\n"),
            std::vector<std::string>{"users.txt:1: user 'alice': malformed bcrypt hash"});
  EXPECT_TRUE(parse_ok("alice:" + hash).verify("alice", "pw"));
}

TEST(CredentialTable, RefusedSchemesNamedWithFileAndLine) {
  const std::string advice = " (use bcrypt, sha512-crypt or yescrypt)";
  const std::string locked =
      ": locked-account markers ('!', '*') are not accepted; remove the line";
  const std::string md5 = make_hash("$1$", 0, "md5secret");
  // scrypt is refused by prefix alone: no need to pay ~0.25 s for a real one.
  const std::string scrypt = "$7$CU..../....abcdefghijklmnop$" + std::string(43, 'A');
  ASSERT_TRUE(md5.starts_with("$1$"));
  const std::string text =
      "# header\n"
      "alice:" +
      make_hash("$2b$", 4, "fine") +
      "\n"
      "bob:hunter2\n"
      "carol:abJnggxhB/yWI\n"
      "dave:_J9..CCCCXBrJUJV154M\n"
      "erin:" +
      md5 +
      "\n"
      "frank:$3$$8846f7eaee8fb117ad06bdd830b7586c\n"
      "grace:$sha1$19703$iVdJqfSE$v4qYKl1zqYThwpjJAoKX6UvlHq/a\n"
      "heidi:$md5,rounds=5000$GUBv0xjJ$$mSwgIswdjlTY0YxV7HBVm0\n"
      "ivan:$2x$04$abcdefghijklmnopqrstuu1234567890123456789012345678901\n"
      "judy:" +
      scrypt +
      "\n"
      "mallory:$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaA\n"
      "oscar:!" +
      make_hash("$6$", 5000, "locked") +
      "\n"
      "peggy:*\n"
      "trent:\n"
      "victor:correct horse battery staple\n";
  const std::vector<std::string> expected = {
      "users.txt:3: user 'bob': refused hash scheme: plaintext passwords are not accepted" + advice,
      "users.txt:4: user 'carol': refused hash scheme: DES crypt is too weak" + advice,
      "users.txt:5: user 'dave': refused hash scheme: extended DES crypt is too weak" + advice,
      "users.txt:6: user 'erin': refused hash scheme: md5-crypt is too weak" + advice,
      "users.txt:7: user 'frank': refused hash scheme: NT hashes are too weak" + advice,
      "users.txt:8: user 'grace': refused hash scheme: sha1-crypt is too weak" + advice,
      "users.txt:9: user 'heidi': refused hash scheme: Sun md5-crypt is too weak" + advice,
      "users.txt:10: user 'ivan': refused hash scheme: obsolete bcrypt variant ($2$, $2x$)" +
          advice,
      "users.txt:11: user 'judy': refused hash scheme: unknown or unsupported scheme" + advice,
      "users.txt:12: user 'mallory': refused hash scheme: unknown or unsupported scheme" + advice,
      "users.txt:13: user 'oscar'" + locked,
      "users.txt:14: user 'peggy'" + locked,
      "users.txt:15: user 'trent': empty hash",
      "users.txt:16: user 'victor': refused hash scheme: plaintext passwords are not accepted" +
          advice,
  };
  const auto errors = parse_errors(text);
  EXPECT_EQ(errors, expected);
  // A refused field may be a password: it never shows up in a message.
  for (const std::string& error : errors) {
    EXPECT_EQ(error.find("hunter2"), std::string::npos);
    EXPECT_EQ(error.find("horse"), std::string::npos);
    EXPECT_EQ(error.find("abJnggxhB"), std::string::npos);
  }
}

TEST(CredentialTable, MalformedHashesOfAcceptedSchemes) {
  const std::string bcrypt = make_hash("$2b$", 4, "pw");
  const std::string sha = make_hash("$6$", 5000, "pw");
  const std::string yes = make_hash("$y$", 1, "pw");
  const std::string sha_digest = sha.substr(sha.rfind('$'));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {bcrypt.substr(0, 59), "bcrypt"},
      {bcrypt + "x", "bcrypt"},
      {"$2b$03" + bcrypt.substr(6), "bcrypt"},
      {"$2b$32" + bcrypt.substr(6), "bcrypt"},
      {"$2b$4x" + bcrypt.substr(6), "bcrypt"},
      // The last salt character carries 4 unused bits that bcrypt normalises.
      {bcrypt.substr(0, 28) + "P" + bcrypt.substr(29), "bcrypt"},
      {"$6$rounds=999$abcdefgh" + sha_digest, "sha512-crypt"},
      {"$6$rounds=05000$abcdefgh" + sha_digest, "sha512-crypt"},
      {"$6$rounds=1000000000$abcdefgh" + sha_digest, "sha512-crypt"},
      {"$6$rounds=$abcdefgh" + sha_digest, "sha512-crypt"},
      {"$6$abcdefghijklmnopq" + sha_digest, "sha512-crypt"},  // 17-character salt
      {"$6$" + sha_digest, "sha512-crypt"},                   // empty salt
      {"$6$abc_def" + sha_digest, "sha512-crypt"},
      {sha.substr(0, sha.size() - 1), "sha512-crypt"},
      {"$6$abcdefgh", "sha512-crypt"},
      {"$5$abcdefgh" + sha_digest, "sha256-crypt"},
      {yes.substr(0, yes.rfind('$')), "yescrypt"},
      {yes + "A", "yescrypt"},
      {"$y$$salt" + yes.substr(yes.rfind('$')), "yescrypt"},
  };
  int line = 0;
  std::string text;
  std::vector<std::string> expected;
  for (const auto& [hash, scheme] : cases) {
    ++line;
    text += "u" + std::to_string(line) + ":" + hash + "\n";
    expected.push_back("users.txt:" + std::to_string(line) + ": user 'u" + std::to_string(line) +
                       "': malformed " + scheme + " hash");
  }
  EXPECT_EQ(parse_errors(text), expected);
  // rounds= written out in range is fine.
  EXPECT_EQ(parse_ok("u:$6$rounds=5000$abcdefgh" + sha_digest + "\n").size(), 1u);
  EXPECT_EQ(parse_errors("u:" + bcrypt + " \n"),
            std::vector<std::string>{"users.txt:1: user 'u': whitespace after the hash"});
}

TEST(CredentialTable, DuplicatesNameTheFirstLine) {
  const std::string hash = make_hash("$2b$", 4, "pw");
  EXPECT_EQ(
      parse_errors("alice:" + hash + "\n# x\nbob:" + hash + "\nalice:" + hash + "\nalice:" + hash +
                   "\n"),
      (std::vector<std::string>{"users.txt:4: user 'alice': duplicate entry (first on line 1)",
                                "users.txt:5: user 'alice': duplicate entry (first on line 1)"}));
  // Names are case-sensitive, as the table is.
  EXPECT_EQ(parse_ok("alice:" + hash + "\nAlice:" + hash + "\n").size(), 2u);
}

TEST(CredentialTable, UserNames) {
  const std::string hash = make_hash("$2b$", 4, "pw");
  const std::string longest(64, 'u');
  const CredentialTable table = parse_ok(longest + ":" + hash + "\nx@example.org:" + hash + "\n");
  EXPECT_TRUE(table.verify(longest, "pw"));
  EXPECT_TRUE(table.verify("x@example.org", "pw"));
  EXPECT_EQ(parse_errors(":" + hash + "\n" + std::string(65, 'u') + ":" + hash +
                         "\nal ice:" + hash + "\n\xc3\xa9t\xc3\xa9:" + hash +
                         "\nno colon here\n"
                         " alice:" +
                         hash + "\nal\x01ice:" + hash + "\n"),
            (std::vector<std::string>{
                "users.txt:1: empty user name",
                "users.txt:2: user name longer than 64 bytes",
                "users.txt:3: user name may only contain printable ASCII characters and no spaces",
                "users.txt:4: user name may only contain printable ASCII characters and no spaces",
                "users.txt:5: expected user:hash",
                "users.txt:6: user name may only contain printable ASCII characters and no spaces",
                "users.txt:7: user name may only contain printable ASCII characters and no spaces",
            }));
}

TEST(CredentialTable, LineLengthLimit) {
  const std::string hash = make_hash("$2b$", 4, "pw");
  const std::string longest = "#" + std::string(1023, 'x');
  EXPECT_EQ(parse_ok(longest + "\n" + longest + "\r\nalice:" + hash + "\n").size(), 1u);
  EXPECT_EQ(parse_errors("alice:" + hash + "\n" + longest + "x\n"),
            std::vector<std::string>{"users.txt:2: line longer than 1024 bytes"});
  EXPECT_EQ(parse_errors("alice:" + hash + std::string(2000, 'A') + "\n"),
            std::vector<std::string>{"users.txt:1: line longer than 1024 bytes"});
}

TEST(CredentialTable, EveryErrorUpToACap) {
  std::string text;
  for (int i = 0; i < 500; ++i) text += "user" + std::to_string(i) + ":plain\n";
  const auto errors = parse_errors(text);
  ASSERT_EQ(errors.size(), 101u);
  EXPECT_EQ(errors[0].substr(0, 26), "users.txt:1: user 'user0':");
  EXPECT_EQ(errors[99].substr(0, 29), "users.txt:100: user 'user99':");
  EXPECT_EQ(errors[100], "users.txt:101: too many errors; giving up");
}

TEST(CredentialTable, FileSizeLimit) {
  std::string text(size_t{16} << 20, '#');
  text[0] = '\n';  // many short comment lines would be slower; one long line is refused anyway
  text.back() = '\n';
  const auto big = CredentialTable::parse(text + "x", "users.txt");
  ASSERT_FALSE(big.ok());
  ASSERT_EQ(big.error().size(), 1u);
  EXPECT_EQ(big.error()[0].to_string(), "users.txt: file too large (more than 16 MiB)");
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    std::string pattern = ::testing::TempDir() + "credentials_test_XXXXXX";
    const int fd = mkstemp(pattern.data());
    EXPECT_GE(fd, 0);
    path_ = pattern;
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(CredentialTable, LoadsARealFile) {
  const TempFile file("# test\nalice:" + make_hash("$2b$", 4, "pw") + "\r\n");
  const auto table = CredentialTable::load(file.path());
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->size(), 1u);
  EXPECT_TRUE(table->verify("alice", "pw"));
  EXPECT_FALSE(table->verify("alice", "wrong"));

  const TempFile bad("alice:secret\n");
  const auto refused = CredentialTable::load(bad.path());
  ASSERT_FALSE(refused.ok());
  ASSERT_EQ(refused.error().size(), 1u);
  EXPECT_EQ(refused.error()[0].file, bad.path());
  EXPECT_EQ(refused.error()[0].line, 1);
  EXPECT_EQ(refused.error()[0].to_string().find("secret"), std::string::npos);
}

TEST(CredentialTable, LoadRefusesMissingAndOddFiles) {
  const std::string missing = ::testing::TempDir() + "credentials_test_no_such_file";
  const auto absent = CredentialTable::load(missing);
  ASSERT_FALSE(absent.ok());
  ASSERT_EQ(absent.error().size(), 1u);
  EXPECT_EQ(absent.error()[0].to_string(), missing + ": cannot open: No such file or directory");

  const auto directory = CredentialTable::load(::testing::TempDir());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error()[0].message, "not a regular file");

  // A sparse 17 MiB file: refused after reading just past the limit.
  const TempFile huge("");
  ASSERT_EQ(truncate(huge.path().c_str(), off_t{17} << 20), 0);
  const auto too_big = CredentialTable::load(huge.path());
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error()[0].message, "file too large (more than 16 MiB)");
}

TEST(CredentialError, Format) {
  EXPECT_EQ((CredentialError{"users.txt", 3, "boom"}).to_string(), "users.txt:3: boom");
  EXPECT_EQ((CredentialError{"users.txt", 0, "boom"}).to_string(), "users.txt: boom");
}

}  // namespace
}  // namespace postern::lookup
