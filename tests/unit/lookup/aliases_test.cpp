// The aliases(5) parser: each kind of target, continuation and comment lines, quoting, case
// folding, :include: lists, the golden files in tests/data/aliases, and every refusal with the
// line it names.
#include "lookup/aliases.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#ifndef POSTERN_TEST_DATA_DIR
#error "POSTERN_TEST_DATA_DIR must name tests/data"
#endif

namespace postern::lookup {

void PrintTo(const AliasTarget& target, std::ostream* os) {
  static const char* const kKinds[] = {"address", "file", "command", "include"};
  *os << kKinds[static_cast<int>(target.kind)] << "(" << target.value << ")";
}

namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;
using Kind = AliasTarget::Kind;
using Targets = std::vector<AliasTarget>;

AliasTarget address(std::string value) {
  return {Kind::address, std::move(value)};
}
AliasTarget file(std::string value) {
  return {Kind::file, std::move(value)};
}
AliasTarget command(std::string value) {
  return {Kind::command, std::move(value)};
}
AliasTarget include(std::string value) {
  return {Kind::include, std::move(value)};
}

AliasTable parse_ok(const std::string& text) {
  auto result = AliasTable::parse(text, "aliases");
  if (!result.ok()) ADD_FAILURE() << result.error().to_string();
  return std::move(result).value();
}

// "aliases:LINE: message" for a refused text; "" when it was accepted.
std::string parse_error(const std::string& text) {
  const auto result = AliasTable::parse(text, "aliases");
  return result.ok() ? "" : result.error().to_string();
}

// The targets of the only alias "a" in text.
Targets targets_of(const std::string& text) {
  const AliasTable table = parse_ok(text);
  const Targets* targets = table.find("a");
  if (targets == nullptr) {
    ADD_FAILURE() << "no alias 'a' in: " << text;
    return {};
  }
  return *targets;
}

Targets list_ok(const std::string& text) {
  auto result = parse_alias_list(text, "list");
  if (!result.ok()) ADD_FAILURE() << result.error().to_string();
  return std::move(result).value();
}

std::string list_error(const std::string& text) {
  const auto result = parse_alias_list(text, "list");
  return result.ok() ? "" : result.error().to_string();
}

std::string data_file(const std::string& name) {
  return (fs::path(POSTERN_TEST_DATA_DIR) / "aliases" / name).string();
}

// A scratch directory removed with the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "aliases_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string write(const std::string& name, const std::string& content) const {
    const fs::path path = path_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// Kinds of targets.

TEST(AliasTargets, Addresses) {
  EXPECT_EQ(targets_of("a: bob\n"), Targets{address("bob")});
  // The local part keeps its case, the domain is lower-cased.
  EXPECT_EQ(targets_of("a: Bob@Example.ORG\n"), Targets{address("Bob@example.org")});
  EXPECT_EQ(targets_of("a: Bob.Smith+tag@mail.example.org.\n"),
            Targets{address("Bob.Smith+tag@mail.example.org.")});
  EXPECT_EQ(targets_of("a: <Bob@Example.org>\n"), Targets{address("Bob@example.org")});
  EXPECT_EQ(targets_of("a: <bob>\n"), Targets{address("bob")});
  EXPECT_EQ(targets_of("a: bob@[192.0.2.1]\n"), Targets{address("bob@[192.0.2.1]")});
  EXPECT_EQ(targets_of("a: jörg@bücher.example\n"), Targets{address("jörg@bücher.example")});
}

TEST(AliasTargets, QuotedLocalParts) {
  EXPECT_EQ(targets_of("a: \"a b\"@X.org\n"), Targets{address("\"a b\"@x.org")});
  // Quoting that is not needed is dropped: the value is address::to_string's canonical form.
  EXPECT_EQ(targets_of("a: \"bob\"@x.org\n"), Targets{address("bob@x.org")});
  EXPECT_EQ(targets_of("a: \"a, b\"@x.org, c\n"),
            (Targets{address("\"a, b\"@x.org"), address("c")}));
  EXPECT_EQ(targets_of("a: \"a\\\"b\"@x.org\n"), Targets{address("\"a\\\"b\"@x.org")});
  EXPECT_EQ(targets_of("a: \"Jane Doe\"\n"), Targets{address("\"Jane Doe\"")});
  EXPECT_EQ(targets_of("a: \"a@b\"@x.org\n"), Targets{address("\"a@b\"@x.org")});
}

TEST(AliasTargets, Files) {
  EXPECT_EQ(targets_of("a: /var/mail/archive\n"), Targets{file("/var/mail/archive")});
  // A trailing '/' (a maildir for Postfix) is the delivery agent's business: kept.
  EXPECT_EQ(targets_of("a: /srv/maildir/\n"), Targets{file("/srv/maildir/")});
  EXPECT_EQ(targets_of("a: \"/var/mail/my archive\"\n"), Targets{file("/var/mail/my archive")});
  EXPECT_EQ(targets_of("a: \"/var/mail/a,b\"\n"), Targets{file("/var/mail/a,b")});
}

TEST(AliasTargets, Commands) {
  EXPECT_EQ(targets_of("a: |/usr/bin/procmail -a x\n"), Targets{command("/usr/bin/procmail -a x")});
  EXPECT_EQ(targets_of("a: \"|/usr/bin/procmail -a x, y\"\n"),
            Targets{command("/usr/bin/procmail -a x, y")});
  EXPECT_EQ(targets_of("a: \"| /bin/cat \\\"quoted\\\"\", bob\n"),
            (Targets{command("/bin/cat \"quoted\""), address("bob")}));
  // Quotes inside an unquoted command keep its commas together.
  EXPECT_EQ(targets_of("a: |/bin/sh -c \"a, b\", bob\n"),
            (Targets{command("/bin/sh -c \"a, b\""), address("bob")}));
}

TEST(AliasTargets, Includes) {
  EXPECT_EQ(targets_of("a: :include:/etc/lists/a\n"), Targets{include("/etc/lists/a")});
  EXPECT_EQ(targets_of("a: :INCLUDE:/etc/lists/a\n"), Targets{include("/etc/lists/a")});
  EXPECT_EQ(targets_of("a: :include: /etc/lists/a\n"), Targets{include("/etc/lists/a")});
  EXPECT_EQ(targets_of("a: \":include:/etc/my lists/a\"\n"), Targets{include("/etc/my lists/a")});
}

TEST(AliasTargets, AllKindsInOneEntryInOrder) {
  EXPECT_EQ(targets_of("a:bob,/var/mail/x ,  |cmd arg\t, :include:/etc/l,<c@d.org>\n"),
            (Targets{address("bob"), file("/var/mail/x"), command("cmd arg"), include("/etc/l"),
                     address("c@d.org")}));
}

// Lines.

TEST(AliasLines, ContinuationCommentsAndBlankLines) {
  const AliasTable table = parse_ok(
      "# the administrators\n"
      "\n"
      "root: alice,\n"
      "\tbob,\n"
      "# a comment does not end the entry\n"
      "\n"
      "  carol@example.org\n"
      "   \t\n"
      "postmaster: root\n");
  EXPECT_EQ(table.size(), 2u);
  ASSERT_NE(table.find("root"), nullptr);
  EXPECT_EQ(*table.find("root"),
            (Targets{address("alice"), address("bob"), address("carol@example.org")}));
  EXPECT_EQ(*table.find("postmaster"), Targets{address("root")});
}

TEST(AliasLines, ContinuationWithoutComma) {
  // The line break is whitespace like any other: a missing comma is still an error.
  EXPECT_EQ(parse_error("a: bob\n  carol\n"),
            "aliases:1: bad address 'bob   carol': whitespace outside quotes (separate items "
            "with commas)");
  EXPECT_EQ(targets_of("a:\n  bob,\n  carol\n"), (Targets{address("bob"), address("carol")}));
}

TEST(AliasLines, CrLf) {
  const std::string lf = "root: alice,\n\tbob@example.org\n# c\nsupport: \"|/bin/x, y\"\n";
  std::string crlf;
  for (const char c : lf) crlf += c == '\n' ? "\r\n"s : std::string(1, c);
  const AliasTable a = parse_ok(lf);
  const AliasTable b = parse_ok(crlf);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(*a.find("root"), *b.find("root"));
  EXPECT_EQ(*b.find("support"), Targets{command("/bin/x, y")});
  // Errors name the same line either way.
  EXPECT_EQ(parse_error("a: b\r\nc: d,\r\n"), "aliases:2: trailing comma after the last target");
  // No newline at the end of the file.
  EXPECT_EQ(parse_ok("a: b\r").size(), 1u);
  EXPECT_EQ(parse_ok("a: b").size(), 1u);
}

TEST(AliasLines, HashInsideALineIsNotAComment) {
  EXPECT_EQ(parse_error("a: bob # the admin\n"),
            "aliases:1: bad address 'bob # the admin': whitespace outside quotes (separate "
            "items with commas)");
}

TEST(AliasLines, EmptyFile) {
  EXPECT_EQ(parse_ok("").size(), 0u);
  EXPECT_EQ(parse_ok("# nothing\n\n").size(), 0u);
}

// Names.

TEST(AliasNames, CaseFolding) {
  const AliasTable table = parse_ok("PostMaster: Root\n");
  for (const char* name : {"postmaster", "POSTMASTER", "PostMaster", "pOsTmAsTeR"}) {
    ASSERT_NE(table.find(name), nullptr) << name;
    EXPECT_EQ(*table.find(name), Targets{address("Root")});
  }
  EXPECT_EQ(table.find("postmaste"), nullptr);
  EXPECT_EQ(table.find("postmaster "), nullptr);
  EXPECT_EQ(table.find(""), nullptr);
}

TEST(AliasNames, Quoted) {
  const AliasTable table = parse_ok(
      "\"Help Desk\": alice\n"
      "\"a:b\" : bob\n"
      "\"x\\\"y\": carol\n"
      "name : dave\n");
  EXPECT_EQ(table.size(), 4u);
  EXPECT_NE(table.find("help desk"), nullptr);
  EXPECT_NE(table.find("A:B"), nullptr);
  EXPECT_NE(table.find("x\"y"), nullptr);
  EXPECT_NE(table.find("name"), nullptr);
}

TEST(AliasNames, Duplicates) {
  EXPECT_EQ(parse_error("a: b\n\nc: d\nA: e\n"),
            "aliases:4: alias 'a': duplicate entry (first on line 1)");
  EXPECT_EQ(parse_error("\"x y\": b\n\"X Y\": c\n"),
            "aliases:2: alias 'x y': duplicate entry (first on line 1)");
}

TEST(AliasNames, Refused) {
  EXPECT_EQ(parse_error("a: b\n: c\n"), "aliases:2: empty alias name");
  EXPECT_EQ(parse_error("a: b\n\"\": c\n"), "aliases:2: empty alias name");
  EXPECT_EQ(parse_error("a: b\nbob@example.org: c\n"),
            "aliases:2: alias name 'bob@example.org' may not contain '@'");
  EXPECT_EQ(parse_error("\"a@b\": c\n"), "aliases:1: alias name 'a@b' may not contain '@'");
  EXPECT_EQ(parse_error("a: b\nmy list: c\n"),
            "aliases:2: whitespace in alias name 'my list' (quote the name, or add the "
            "missing ':')");
  EXPECT_EQ(parse_error("a: b\nroot bob\n"), "aliases:2: expected 'name: target, ...'");
  // The colon must be on the name's own line.
  EXPECT_EQ(parse_error("root\n  : bob\n"), "aliases:1: expected 'name: target, ...'");
  EXPECT_EQ(parse_error("\"root\n"), "aliases:1: unterminated quoted name");
  EXPECT_EQ(parse_error("\"root\" bob\n"), "aliases:1: expected ':' after the quoted name");
  EXPECT_EQ(parse_error(std::string(64, 'n') + ": b\n").empty(), true);
  EXPECT_EQ(parse_error(std::string(65, 'n') + ": b\n"),
            "aliases:1: alias name longer than 64 bytes");
}

// Refusals, each with its line.

TEST(AliasErrors, EmptyTargets) {
  EXPECT_EQ(parse_error("x: y\na: b,,c\n"), "aliases:2: empty target");
  EXPECT_EQ(parse_error("a: ,b\n"), "aliases:1: empty target");
  EXPECT_EQ(parse_error("a: b, c,\n"), "aliases:1: trailing comma after the last target");
  EXPECT_EQ(parse_error("a: b,\n  c,\n\n# end\n"),
            "aliases:2: trailing comma after the last target");
  EXPECT_EQ(parse_error("x: y\na:\n"), "aliases:2: alias 'a' has no targets");
  EXPECT_EQ(parse_error("a:   \t\n  \n"), "aliases:1: alias 'a' has no targets");
  EXPECT_EQ(parse_error("a: ,\n"), "aliases:1: empty target");
}

TEST(AliasErrors, ErrorsOnContinuationLinesNameThatLine) {
  EXPECT_EQ(parse_error("a: b,\n  c,\n# note\n  d e,\n  f\n"),
            "aliases:4: bad address 'd e': whitespace outside quotes (separate items with "
            "commas)");
  EXPECT_EQ(parse_error("a: b,\n  c,\n  ,d\n"), "aliases:3: empty target");
  EXPECT_EQ(parse_error("a: b,\n  \"c\n"), "aliases:2: unterminated quoted string");
  // A quoted string does not run onto the next line.
  EXPECT_EQ(parse_error("a: \"|x,\n  y\"\n"), "aliases:1: unterminated quoted string");
  EXPECT_EQ(parse_error("  a: b\n"), "aliases:1: continuation line without an entry before it");
  EXPECT_EQ(parse_error("# c\n\n  a: b\n"),
            "aliases:3: continuation line without an entry before it");
}

TEST(AliasErrors, Paths) {
  EXPECT_EQ(parse_error("a: b\nc: var/mail/x\n"),
            "aliases:2: relative path (an absolute path is needed): 'var/mail/x'");
  EXPECT_EQ(parse_error("a: ./x\n"),
            "aliases:1: relative path (an absolute path is needed): './x'");
  EXPECT_EQ(parse_error("a: \"x/y\"\n"),
            "aliases:1: relative path (an absolute path is needed): '\"x/y\"'");
  EXPECT_EQ(parse_error("a: :include:lists/a\n"),
            "aliases:1: relative path (an absolute path is needed): 'lists/a'");
  EXPECT_EQ(parse_error("a: \":include:lists/a\"\n"),
            "aliases:1: relative path (an absolute path is needed): 'lists/a'");
  EXPECT_EQ(parse_error("a: :include:\n"), "aliases:1: empty path after :include:");
  EXPECT_EQ(parse_error("a: /var/mail/x /var/mail/y\n"),
            "aliases:1: whitespace in path (quote the item, or separate items with commas): "
            "'/var/mail/x /var/mail/y'");
  EXPECT_EQ(parse_error("a: :include:/a /b\n"),
            "aliases:1: whitespace in path (quote the item, or separate items with commas): "
            "'/a /b'");
  // With a domain, '/' is just a character of the local part.
  EXPECT_EQ(targets_of("a: x/y@example.org\n"), Targets{address("x/y@example.org")});
}

TEST(AliasErrors, Commands) {
  EXPECT_EQ(parse_error("a: |\n"), "aliases:1: empty command after '|'");
  EXPECT_EQ(parse_error("a: \"|  \"\n"), "aliases:1: empty command after '|'");
}

TEST(AliasErrors, Addresses) {
  EXPECT_EQ(parse_error("a: b@c@d\n"),
            "aliases:1: bad address 'b@c@d': invalid character in domain");
  EXPECT_EQ(parse_error("a: @example.org\n"),
            "aliases:1: bad address '@example.org': empty local part");
  EXPECT_EQ(parse_error("a: bob@\n"), "aliases:1: bad address 'bob@': missing domain");
  EXPECT_EQ(parse_error("a: a..b\n"), "aliases:1: bad address 'a..b': '..' in local part");
  EXPECT_EQ(parse_error("a: b c\n"),
            "aliases:1: bad address 'b c': whitespace outside quotes (separate items with commas)");
  EXPECT_EQ(parse_error("a: Bob <bob@x.org>\n"),
            "aliases:1: bad address 'Bob <bob@x.org>': whitespace outside quotes (separate "
            "items with commas)");
  EXPECT_EQ(parse_error("a: <bob@x.org\n"),
            "aliases:1: bad address '<bob@x.org': '<' without a closing '>' at the end");
  EXPECT_EQ(parse_error("a: <>\n"), "aliases:1: bad address '<>': empty address");
  EXPECT_EQ(parse_error("a: \"\"\n"), "aliases:1: bad address '\"\"': empty local part");
  EXPECT_EQ(parse_error("a: \"a b\"x@y\n"),
            "aliases:1: bad address '\"a b\"x@y': missing '@' after local part");
  EXPECT_EQ(parse_error("a: \\bob\n"),
            "aliases:1: bad address '\\bob': sendmail's '\\name' (no further expansion) is not "
            "supported");
  EXPECT_EQ(parse_error("a: " + std::string(65, 'x') + "@example.org\n"),
            "aliases:1: bad address '" + std::string(60, 'x') + "...': local part too long");
  // Quoted or bracketed, these would print as a command or a file.
  EXPECT_EQ(parse_error("a: \"|x\"@example.org\n"),
            "aliases:1: bad address '\"|x\"@example.org': a local part may not start with '|', "
            "'/' or ':include:'");
  EXPECT_EQ(parse_error("a: <\"/x\"@example.org>\n"),
            "aliases:1: bad address '\"/x\"@example.org': a local part may not start with '|', "
            "'/' or ':include:'");
  EXPECT_EQ(parse_error("a: <\":include:x\">\n"),
            "aliases:1: bad address '\":include:x\"': a local part may not start with '|', "
            "'/' or ':include:'");
  EXPECT_EQ(parse_error("a: \"\xff\"@x.org\n"),
            "aliases:1: bad address '\"\xff\"@x.org': invalid UTF-8");
}

TEST(AliasErrors, ControlCharacters) {
  EXPECT_EQ(parse_error("a: b\nc: d\0e\n"s), "aliases:2: NUL byte");
  EXPECT_EQ(parse_error("a: b\n# \0 in a comment\n"s), "aliases:2: NUL byte");
  EXPECT_EQ(parse_error("a: b\x1b[31m\n"), "aliases:1: control character");
  EXPECT_EQ(parse_error("a: b\rc: d\n"), "aliases:1: control character");
  EXPECT_EQ(parse_error("a: b\n\x7f\n"), "aliases:2: control character");
  EXPECT_EQ(parse_error("a: \"|x\x01\"\n"), "aliases:1: control character");
  EXPECT_EQ(parse_error("\xef\xbb\xbf"
                        "a: b\n"),
            "aliases:1: byte order mark at the start of the file");
  // Tabs are whitespace.
  EXPECT_EQ(targets_of("a:\tb,\tc\t\n"), (Targets{address("b"), address("c")}));
}

TEST(AliasErrors, Bounds) {
  const std::string long_item = "/" + std::string(65530, 'x');
  EXPECT_EQ(parse_ok("a: " + long_item + "\n").size(), 1u);
  EXPECT_EQ(parse_error("a: b\na: " + long_item + "xxxx\n"),
            "aliases:2: line longer than 65536 bytes");
  // The limit is on the whole entry, continuation lines included.
  std::string entry = "a: b";
  for (int i = 0; i < 7; ++i) entry += ",\n  /" + std::string(10000, 'x');
  EXPECT_EQ(parse_error(entry + "\n"),
            "aliases:8: entry (with its continuation lines) longer than 65536 bytes");

  std::string many = "a: x0";
  for (int i = 1; i < 10000; ++i) many += ",x" + std::to_string(i);
  const AliasTable table = parse_ok(many + "\n");
  EXPECT_EQ(table.find("a")->size(), 10000u);
  EXPECT_EQ(table.find("a")->back(), address("x9999"));
  EXPECT_EQ(parse_error(many + ",\n y\n"), "aliases:2: alias 'a' has more than 10000 targets");

  EXPECT_EQ(parse_error(std::string((16 << 20) + 1, '#')),
            "aliases: file too large (more than 16 MiB)");
}

TEST(AliasErrors, FirstErrorWins) {
  EXPECT_EQ(parse_error("a: b\nc:\nd: e,,f\n"), "aliases:2: alias 'c' has no targets");
}

TEST(AliasErrors, ToString) {
  EXPECT_EQ((AliasError{"/etc/aliases", 12, "empty target"}.to_string()),
            "/etc/aliases:12: empty target");
  EXPECT_EQ((AliasError{"/etc/aliases", 0, "not a regular file"}.to_string()),
            "/etc/aliases: not a regular file");
}

// :include: lists.

TEST(AliasList, ItemsByCommasAndNewlines) {
  EXPECT_EQ(list_ok("alice\nbob@Example.org, carol,\n\n# c\n  dave\n\"|x, y\"\n"),
            (Targets{address("alice"), address("bob@example.org"), address("carol"),
                     address("dave"), command("x, y")}));
  EXPECT_EQ(list_ok("a, b\r\nc\r\n"), (Targets{address("a"), address("b"), address("c")}));
  EXPECT_EQ(list_ok("a"), Targets{address("a")});
  EXPECT_TRUE(list_ok("").empty());
  EXPECT_TRUE(list_ok("# only a comment\n\n").empty());
  // A "name:" part is not for lists: ':' is no address character.
  EXPECT_EQ(list_error("a: b\n"),
            "list:1: bad address 'a: b': whitespace outside quotes "
            "(separate items with commas)");
}

TEST(AliasList, Errors) {
  EXPECT_EQ(list_error("a\nb,,c\n"), "list:2: empty target");
  EXPECT_EQ(list_error("a\n,\n"), "list:2: empty target");
  EXPECT_EQ(list_error("a\nb, c,,\n"), "list:2: empty target");
  EXPECT_EQ(list_error("a\n\n/x\nrel/x\n"),
            "list:4: relative path (an absolute path is needed): 'rel/x'");
  EXPECT_EQ(list_error("a\n\"b\nc\"\n"), "list:2: unterminated quoted string");
  EXPECT_EQ(list_error("a\nb\0\n"s), "list:2: NUL byte");
  EXPECT_EQ(list_error("a\n:include:x\n"),
            "list:2: relative path (an absolute path is needed): 'x'");
  EXPECT_EQ(list_error("a\n" + std::string(65537, 'x') + "\n"),
            "list:2: line longer than 65536 bytes");
}

TEST(AliasList, Bound) {
  std::string text;
  for (int i = 0; i < 10000; ++i) text += "u" + std::to_string(i) + (i % 10 == 9 ? "\n" : ", ");
  EXPECT_EQ(list_ok(text).size(), 10000u);
  EXPECT_EQ(list_error(text + "one-more\n"), "list:1001: the list has more than 10000 targets");
}

// Files.

TEST(AliasLoad, EtcAliases) {
  const auto result = AliasTable::load(data_file("etc-aliases"));
  ASSERT_TRUE(result.ok()) << result.error().to_string();
  const AliasTable& table = result.value();
  EXPECT_EQ(table.size(), 20u);
  EXPECT_EQ(*table.find("MAILER-DAEMON"), Targets{address("postmaster")});
  EXPECT_EQ(*table.find("root"), (Targets{address("alice"), address("Bob@example.org"),
                                          file("/var/spool/mail-archive/root")}));
  EXPECT_EQ(*table.find("help desk"), Targets{address("helpdesk@support.example.org")});
  EXPECT_EQ(*table.find("postern-bounces"),
            Targets{command("/usr/local/bin/bounce-stats --tag postern, --quiet")});
  EXPECT_EQ(*table.find("procmail"), Targets{command("/usr/bin/procmail -a \"$EXTENSION\"")});
  EXPECT_EQ(*table.find("staff"), Targets{include("/etc/postern/lists/staff")});
  EXPECT_EQ(*table.find("quoted.person"), Targets{address("\"Jane Q. Doe\"@example.net")});
  EXPECT_EQ(*table.find("archive"), Targets{file("/var/spool/mail archive/all")});
}

TEST(AliasLoad, ListsAliases) {
  const auto result = AliasTable::load(data_file("lists-aliases"));
  ASSERT_TRUE(result.ok()) << result.error().to_string();
  const AliasTable& table = result.value();
  EXPECT_EQ(table.size(), 7u);
  EXPECT_EQ(*table.find("announce"), Targets{include("/etc/postern/lists/announce")});
  EXPECT_EQ(*table.find("devel"),
            (Targets{include("/etc/postern/lists/devel"), address("devel-archive")}));
  EXPECT_EQ(*table.find("devel-archive"),
            (Targets{file("/srv/lists/devel/mbox"), file("/srv/lists/devel/maildir/")}));
  EXPECT_EQ(*table.find("digest"), Targets{command("/usr/lib/postern/digest --list devel")});
  EXPECT_EQ(*table.find("everyone"),
            (Targets{address("announce"), address("devel"), address("staff@lists.example.com")}));
}

TEST(AliasLoad, CrLfAliases) {
  const auto result = AliasTable::load(data_file("crlf-aliases"));
  ASSERT_TRUE(result.ok()) << result.error().to_string();
  EXPECT_EQ(result->size(), 3u);
  EXPECT_EQ(*result->find("root"), (Targets{address("alice"), address("bob@example.org")}));
  EXPECT_EQ(*result->find("support"), Targets{command("/usr/bin/ticket --queue support")});
}

TEST(AliasLoad, BadFileNamesItsLine) {
  const std::string path = data_file("bad-relative");
  const auto result = AliasTable::load(path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().file, path);
  EXPECT_EQ(result.error().line, 3);
  EXPECT_EQ(result.error().message,
            "relative path (an absolute path is needed): 'var/backup/mail'");
}

TEST(AliasLoad, IncludeList) {
  std::ifstream in(data_file("include-list"), std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(list_ok(text),
            (Targets{address("alice"), address("bob@example.org"), address("carol@example.com"),
                     address("\"dave smith\"@example.net"), address("eve@example.org"),
                     file("/var/spool/staff-archive"), command("/usr/bin/logger -t staff, mail"),
                     include("/etc/postern/lists/contractors")}));
}

TEST(AliasLoad, MissingFile) {
  const TempDir dir;
  const std::string path = dir.path() + "/no-such-file";
  const auto result = AliasTable::load(path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().file, path);
  EXPECT_EQ(result.error().line, 0);
  EXPECT_EQ(result.error().to_string(), path + ": cannot open: No such file or directory");
}

TEST(AliasLoad, NotARegularFile) {
  const TempDir dir;
  const auto result = AliasTable::load(dir.path());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().to_string(), dir.path() + ": not a regular file");
}

TEST(AliasLoad, TooLarge) {
  const TempDir dir;
  std::string text;
  while (text.size() < (16 << 20)) text += "#" + std::string(1022, '-') + "\n";
  const std::string path = dir.write("big", text + "\n");
  const auto result = AliasTable::load(path);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().line, 0);
  EXPECT_EQ(result.error().message, "larger than 16777216 bytes");
  // Exactly at the limit is fine.
  EXPECT_TRUE(AliasTable::load(dir.write("edge", text)).ok());
}

TEST(AliasLoad, WrittenFile) {
  const TempDir dir;
  const auto result = AliasTable::load(dir.write("aliases", "a: b\n"));
  ASSERT_TRUE(result.ok()) << result.error().to_string();
  EXPECT_EQ(*result->find("A"), Targets{address("b")});
}

}  // namespace
}  // namespace postern::lookup
