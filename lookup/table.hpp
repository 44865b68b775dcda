// File tables: "key value" lines, the plain format shared by Postern's lookup tables (virtual
// users now, more kinds later). Parsed whole or refused whole, so a reload with a bad line
// keeps the table in use. Input is an admin's file, read by lookup from a descriptor.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "common/ipc/messages.hpp"
#include "common/util/result.hpp"
#include "mda/api.hpp"

namespace postern::lookup {

constexpr size_t kMaxTableFile = 16 << 20;
constexpr size_t kMaxTableLine = 4096;

struct TableError {
  std::string file;
  int line = 0;
  std::string message;
  std::string to_string() const;  // "file:line: message"
};

// key -> value. Lines: "key", or "key" then blanks then the value (the rest of the line,
// trimmed); '#' starts a comment line; blank lines are skipped. Keys are lower-cased and
// unique; control characters are refused.
class FileTable {
 public:
  static Result<FileTable, TableError> parse(std::string_view text, const std::string& file);
  const std::string* find(std::string_view key) const;  // key in lower case
  size_t size() const { return entries_.size(); }
  const std::map<std::string, std::string, std::less<>>& entries() const { return entries_; }
  // The line a key is on, for errors about its value.
  int line_of(std::string_view key) const;

 private:
  std::map<std::string, std::string, std::less<>> entries_;
  std::map<std::string, int, std::less<>> lines_;
};

// A virtual user's own delivery, overriding the domain's: "maildir:/path", "mbox:/path",
// "lmtp:unix:/path", "lmtp:IP:port" or "command:command line"; paths absolute.
struct UserDelivery {
  msg::DeliveryMethod method = msg::DeliveryMethod::maildir;
  std::string target;
};
// Parses a value of a virtual users table; an empty value is "the domain's delivery".
Result<std::optional<UserDelivery>> parse_user_delivery(std::string_view value);

// A virtual users table: keys "user" (every domain using the table) or "user@domain" (that
// domain only), each with an optional UserDelivery. Every value is checked when loading.
class UserTable {
 public:
  static Result<UserTable, TableError> parse(std::string_view text, const std::string& file);
  // nullptr: no such user; otherwise the user's own delivery (or nullopt).
  const std::optional<UserDelivery>* find(std::string_view local_part,
                                          std::string_view domain) const;
  size_t size() const { return users_.size(); }

 private:
  std::map<std::string, std::optional<UserDelivery>, std::less<>> users_;
};

}  // namespace postern::lookup
