// The aliases table: aliases(5) files as sendmail, Postfix and OpenSMTPD write them, parsed into
// name -> targets. Parsing only: nothing here expands, opens an :include: file or runs a command.
// Input is a file the administrator owns; a file with any bad line is refused whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/util/result.hpp"

namespace postern::lookup {

// One item of an alias's right-hand side.
struct AliasTarget {
  enum class Kind : uint8_t { address, file, command, include, mailbox };
  Kind kind = Kind::address;
  // address: address::to_string of the parsed mailbox, so the local part keeps its case and
  //   the domain is lower-cased ("bob", "Bob@example.org", "\"a b\"@example.org");
  // file: an absolute path ("/var/mail/archive"; a trailing '/' is kept);
  // command: the command text without the leading '|' ("/usr/bin/procmail -a x");
  // include: the absolute path after ":include:";
  // mailbox: a ~/.forward's "\name": the local user name, delivered to without expansion.
  std::string value;
  friend bool operator==(const AliasTarget&, const AliasTarget&) = default;
};

struct AliasError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error is about the file as a whole
  std::string message;
  // "file:line: message", or "file: message" when line is 0.
  std::string to_string() const;
};

class AliasTable {
 public:
  // Parses a whole aliases file. Any bad line makes the whole parse fail with the first error
  // (file and line), so a reload can keep the old table. file stands for the file in errors.
  static Result<AliasTable, AliasError> parse(std::string_view text, const std::string& file);
  // Reads the file (at most 16 MiB, an error otherwise) and parses it.
  static Result<AliasTable, AliasError> load(const std::string& path);

  // The targets of an alias name (ASCII case-insensitive; pass any case), or nullptr.
  const std::vector<AliasTarget>* find(std::string_view name) const;
  size_t size() const { return aliases_.size(); }

 private:
  AliasTable() = default;

  std::unordered_map<std::string, std::vector<AliasTarget>> aliases_;  // lower-case names
};

// The content of an :include: file: right-hand-side items, separated by commas and/or newlines,
// '#' comment lines allowed, no "name:" part. A comma at the end of a line is tolerated; an
// empty file gives an empty list.
Result<std::vector<AliasTarget>, AliasError> parse_alias_list(std::string_view text,
                                                              const std::string& file);

// A system user's ~/.forward: an :include: file's list, plus "\name" items (Kind::mailbox).
Result<std::vector<AliasTarget>, AliasError> parse_forward_list(std::string_view text,
                                                                const std::string& file);

}  // namespace postern::lookup
