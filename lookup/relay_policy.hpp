// What lookup allows beyond local mail: the relay domains any client may send to, and the
// addresses an authenticated user may write in MAIL FROM (the default rule and the senders
// table). Input: the configuration and an admin's table file; the facts about a session
// (who authenticated, from where) are lookup's own, passed in by lookup_process.cpp.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/result.hpp"
#include "lookup/api.hpp"
#include "lookup/table.hpp"

namespace postern::lookup {

// relay_domains: "example.org" covers that name only, "*.example.org" every name below it
// (not example.org itself). Names compare without case and without one trailing dot; an
// address literal is never a relay domain.
class RelayDomains {
 public:
  void configure(const std::vector<std::string>& domains);
  bool covers(std::string_view domain) const;
  bool empty() const { return exact_.empty() && parents_.empty(); }

 private:
  std::set<std::string, std::less<>> exact_;
  std::set<std::string, std::less<>> parents_;  // "example.org" for "*.example.org"
};

// The senders table: "login address..." lines, the addresses separated by blanks or commas;
// an address is local@domain, or @domain for every address of that domain. A login may be
// listed once. Parsed whole or refused whole.
class SenderTable {
 public:
  static Result<SenderTable, TableError> parse(std::string_view text, const std::string& file);
  // The addresses (lower-case) and "@domain" entries granted to login; nullptr when unlisted.
  const std::vector<std::string>* grants(std::string_view login) const;
  size_t size() const { return grants_.size(); }

 private:
  std::map<std::string, std::vector<std::string>, std::less<>> grants_;
};

// May this authenticated login send as this address? With the rule "own": the login itself
// when it is an address, login@<any local domain> when it is a bare name, and what the
// senders table grants it. The null sender is always allowed (it names no one to
// impersonate; DSNs and auto-replies use it). Everything compares without ASCII case.
class SenderPolicy {
 public:
  void configure(SenderRule rule, const std::vector<Domain>& local_domains, bool has_table);
  void load(SenderTable table) { table_ = std::move(table); }
  // nullopt when allowed; otherwise why not, for the log.
  std::optional<std::string> refusal(std::string_view login, std::string_view sender) const;
  size_t table_size() const { return table_ ? table_->size() : 0; }
  // A table is named but none was loaded (it could not be read when lookup started): a
  // refusal may be only for want of its grants, so it is temporary.
  bool table_missing() const { return expects_table_ && !table_; }

 private:
  SenderRule rule_ = SenderRule::own;
  bool expects_table_ = false;
  std::set<std::string, std::less<>> local_domains_;
  std::optional<SenderTable> table_;
};

}  // namespace postern::lookup
