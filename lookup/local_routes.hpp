// Where mail for a local address goes: the domain's aliases(5) expanded recursively (with
// loop detection and :include: files, whose commands and files count only where the domain
// allows them and from a file of root or the aliases file's owner that no one else may
// write), then its users (a list, a virtual users table or the system's accounts), then its
// catch-all. smtp's RCPT checks and mda's deliveries both ask
// here, so a recipient refused at RCPT time is never one delivery would take, and back.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/mail/accounts.hpp"
#include "lookup/aliases.hpp"
#include "lookup/api.hpp"
#include "lookup/forward_files.hpp"
#include "lookup/system_users.hpp"
#include "lookup/table.hpp"
#include "mda/api.hpp"

namespace postern::lookup {

// Aliases pointing at aliases pointing at...: deeper than this is refused as a loop would be.
constexpr int kMaxAliasDepth = 20;
constexpr size_t kMaxIncludeFile = 1 << 20;

class LocalRouter {
 public:
  LocalRouter();
  LocalRouter(const LocalRouter&) = delete;
  LocalRouter& operator=(const LocalRouter&) = delete;
  ~LocalRouter();
  // The local domains; tables already loaded stay loaded for the paths still named. The
  // daemon's own accounts are no mailboxes of "users: system" domains (whose min_uid
  // completes the rule).
  void configure(const std::vector<Domain>& domains, accounts::Policy daemon_accounts = {});
  // A table the parent sent. Refused whole on any error (the old one stays in use); the
  // error names the file and line. owner: the file's, which an aliases file's :include:
  // files may have besides root.
  Status load(msg::TableKind kind, const std::string& name, std::string_view text, uid_t owner = 0);
  // The entries of a loaded aliases or users table (0 when none is loaded by that name).
  size_t table_size(msg::TableKind kind, std::string_view name) const;

  bool is_local(std::string_view domain) const;
  // The first local domain: bare <postmaster> belongs to it.
  std::string default_domain() const;

  // For RCPT: does the address exist? (A domain without a delivery method takes its users
  // anyway; delivery then defers.)
  msg::LocalRoute check(std::string_view local_part, std::string_view domain) const;
  // For delivery: every destination of the address. A system user's ~/.forward is followed
  // as ForwardFiles knows it; one it does not know yet makes the route temporary and its user
  // is added to unread_forwards (when given): ask the parent, store the answer, resolve again.
  msg::LocalRoute resolve(std::string_view address,
                          std::set<std::string>* unread_forwards = nullptr) const;
  ForwardFiles& forward_files() const { return forwards_; }
  const SystemUsers& system_users() const { return system_users_; }

 private:
  struct DomainEntry;
  struct Walk;
  struct Source;
  msg::LocalRoute route(std::string_view local_part, std::string_view domain, bool for_delivery,
                        std::set<std::string>* unread_forwards = nullptr) const;
  void expand(Walk& walk, const std::string& local, const DomainEntry& domain, int depth) const;
  void expand_targets(Walk& walk, const std::string& local, const DomainEntry& domain,
                      const std::vector<AliasTarget>& targets, const Source& from, int depth) const;
  void expand_include(Walk& walk, const std::string& local, const DomainEntry& domain,
                      const std::string& path, const Source& from, int depth) const;
  // consult_forward: false for the user's own mailbox named in the user's .forward.
  void deliver_to_user(Walk& walk, const std::string& local, const DomainEntry& domain, int depth,
                       bool consult_forward = true) const;
  // True when the user's ~/.forward took the mail (or failed the walk); false: the mailbox.
  bool follow_forward(Walk& walk, const std::string& local, const DomainEntry& domain,
                      const std::string& home, int depth) const;
  const DomainEntry* find_domain(std::string_view name) const;

  std::vector<DomainEntry> domains_;
  accounts::Policy daemon_accounts_;
  std::map<std::string, std::shared_ptr<const AliasTable>, std::less<>> aliases_;
  // Who owned each aliases file when it was loaded: its :include: files may be theirs.
  std::map<std::string, uid_t, std::less<>> alias_owners_;
  std::map<std::string, std::shared_ptr<const UserTable>, std::less<>> users_;
  // A cache: asking it is still a const question about the router's routes.
  mutable SystemUsers system_users_;
  mutable ForwardFiles forwards_;  // the parent's answers, filled in by the lookup process
};

}  // namespace postern::lookup
