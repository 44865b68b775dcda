// The credentials table for SMTP AUTH: "user:hash" lines from a file the administrator owns,
// checked with libxcrypt. A password is never logged, never kept longer than one check, and a
// weak or plaintext hash is refused when the table loads, not discovered at login time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/util/result.hpp"

namespace postern::lookup {

struct CredentialError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error is about the file as a whole
  std::string message;
  // "file:line: message", or "file: message" when line is 0.
  std::string to_string() const;
};
using CredentialErrors = std::vector<CredentialError>;

class CredentialTable {
 public:
  // Reads and validates a table file; every error found is reported (up to a cap), and a
  // table with any error is refused as a whole.
  static Result<CredentialTable, CredentialErrors> load(const std::string& path);
  // The same from text already in memory; name stands for the file in errors.
  static Result<CredentialTable, CredentialErrors> parse(std::string_view text,
                                                         const std::string& name);

  // True only if user is in the table and password hashes to its entry. An unknown user
  // costs the same hash computation as a known one, so timing does not reveal who exists.
  // User names or passwords with a NUL byte never match.
  bool verify(std::string_view user, std::string_view password) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string user;
    std::string hash;
  };

  CredentialTable() = default;

  std::vector<Entry> entries_;  // sorted by user, unique
  // What an unknown user is checked against: the hash settings most entries share.
  std::string dummy_hash_;
};

}  // namespace postern::lookup
