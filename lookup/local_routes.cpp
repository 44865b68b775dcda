// Local routes; see local_routes.hpp.
#include "lookup/local_routes.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "common/util/ascii.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::lookup {

struct LocalRouter::DomainEntry {
  Domain config;
};

// One expansion in progress: the aliases being expanded (to see loops), what it found.
struct LocalRouter::Walk {
  bool for_delivery = false;
  // Plus addressing, first pass: a local part that is neither an alias nor a user sets
  // missing instead of reaching the catch-all, so that the part before the delimiter is
  // tried first (Postfix's order: user+tag, user, catch-all).
  bool exact_only = false;
  bool missing = false;
  // Second pass: the whole local part ("user+tag"), which the user's own mailbox is delivered
  // as (Delivered-To:, LMTP's RCPT TO) so the extension reaches the mailbox.
  std::string extended_local;
  std::vector<std::string> stack;
  // System users whose ~/.forward is not known yet (resolve's caller asks the parent).
  std::set<std::string>* unread_forwards = nullptr;
  msg::LocalRoute route{.status = msg::RouteStatus::ok, .error = "", .destinations = {}};

  bool failed() const { return route.status != msg::RouteStatus::ok; }
  void fail(msg::RouteStatus status, std::string error) {
    if (failed()) return;
    route.status = status;
    route.error = std::move(error);
    route.destinations.clear();
  }
  void add(msg::Destination d) {
    if (failed()) return;
    auto& out = route.destinations;
    if (std::find(out.begin(), out.end(), d) != out.end()) return;
    if (out.size() >= msg::kMaxDestinations) {
      fail(msg::RouteStatus::failed,
           "expands to more than " + std::to_string(msg::kMaxDestinations) + " destinations");
      return;
    }
    out.push_back(std::move(d));
  }
};

// Where the alias items being expanded were written, which decides whether they may name
// commands and files.
struct LocalRouter::Source {
  enum class Kind : uint8_t { aliases, include, catch_all, forward };
  Kind kind = Kind::aliases;
  std::string file;         // the aliases or :include: file
  uid_t aliases_owner = 0;  // of the aliases file the expansion started from
  std::string untrusted;    // include: why its commands and files do not count; empty: they do
};

namespace {

// A .forward is its user's: its commands and files count where the domain lets :include:
// files have them (and then run or are written as the user); otherwise the whole file is
// ignored, since half of someone's .forward could lose mail the other half was meant to keep.
std::optional<std::string> forward_refusal(const std::vector<AliasTarget>& targets,
                                           const Domain& d) {
  for (const AliasTarget& t : targets) {
    if (t.kind == AliasTarget::Kind::include) return "it names an :include: file";
    if (t.kind == AliasTarget::Kind::command && !d.alias_commands.include)
      return "it names a command, and alias_commands does not allow them in :include: files";
    if (t.kind == AliasTarget::Kind::file && !d.alias_files.include)
      return "it names a file, and alias_files does not allow them in :include: files";
  }
  return std::nullopt;
}

}  // namespace

namespace {

// The local part as a path segment: refused when it could name another place.
bool safe_segment(std::string_view s) {
  if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
  return std::none_of(s.begin(), s.end(),
                      [](unsigned char c) { return c < 0x21 || c == 0x7f || c == '/'; });
}

// %u and %d replaced (both checked to be whole segments when the config was loaded), "~/"
// replaced by the home directory.
std::string fill_template(std::string_view templ, std::string_view local, std::string_view domain,
                          std::string_view home) {
  std::string out;
  if (templ.starts_with("~/")) {
    out = home;
    if (out.empty() || out.back() != '/') out += '/';
    templ.remove_prefix(2);
  }
  for (size_t i = 0; i < templ.size(); ++i) {
    if (templ[i] == '%' && i + 1 < templ.size() && (templ[i + 1] == 'u' || templ[i + 1] == 'd')) {
      out += templ[i + 1] == 'u' ? local : domain;
      ++i;
    } else {
      out += templ[i];
    }
  }
  return out;
}

}  // namespace

LocalRouter::LocalRouter() = default;
LocalRouter::~LocalRouter() = default;

void LocalRouter::configure(const std::vector<Domain>& domains, accounts::Policy daemon_accounts) {
  domains_.clear();
  daemon_accounts_ = std::move(daemon_accounts);
  std::set<std::string, std::less<>> alias_files;
  std::set<std::string, std::less<>> user_files;
  for (const auto& d : domains) {
    domains_.push_back(DomainEntry{d});
    if (d.aliases) alias_files.insert(*d.aliases);
    if (d.users_table) user_files.insert(*d.users_table);
  }
  std::erase_if(aliases_, [&](const auto& kv) { return !alias_files.contains(kv.first); });
  std::erase_if(alias_owners_, [&](const auto& kv) { return !alias_files.contains(kv.first); });
  std::erase_if(users_, [&](const auto& kv) { return !user_files.contains(kv.first); });
  system_users_.clear();
  forwards_.clear();
}

Status LocalRouter::load(msg::TableKind kind, const std::string& name, std::string_view text,
                         uid_t owner) {
  if (kind == msg::TableKind::aliases) {
    auto table = AliasTable::parse(text, name);
    if (!table.ok()) return make_error(table.error().to_string());
    aliases_[name] = std::make_shared<const AliasTable>(std::move(table).value());
    alias_owners_[name] = owner;
    return ok_status();
  }
  if (kind == msg::TableKind::users) {
    auto table = UserTable::parse(text, name);
    if (!table.ok()) return make_error(table.error().to_string());
    users_[name] = std::make_shared<const UserTable>(std::move(table).value());
    return ok_status();
  }
  return make_error("not a routing table");
}

size_t LocalRouter::table_size(msg::TableKind kind, std::string_view name) const {
  if (kind == msg::TableKind::aliases) {
    const auto it = aliases_.find(name);
    return it == aliases_.end() ? 0 : it->second->size();
  }
  const auto it = users_.find(name);
  return kind != msg::TableKind::users || it == users_.end() ? 0 : it->second->size();
}

const LocalRouter::DomainEntry* LocalRouter::find_domain(std::string_view name) const {
  for (const auto& d : domains_)
    if (d.config.name == name) return &d;
  return nullptr;
}

bool LocalRouter::is_local(std::string_view domain) const {
  return find_domain(domain) != nullptr;
}

std::string LocalRouter::default_domain() const {
  return domains_.empty() ? std::string() : domains_.front().config.name;
}

msg::LocalRoute LocalRouter::check(std::string_view local_part, std::string_view domain) const {
  return route(local_part, domain.empty() ? default_domain() : std::string(domain), false);
}

msg::LocalRoute LocalRouter::resolve(std::string_view address,
                                     std::set<std::string>* unread_forwards) const {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) return route(address, default_domain(), true, unread_forwards);
  return route(address.substr(0, at), address.substr(at + 1), true, unread_forwards);
}

msg::LocalRoute LocalRouter::route(std::string_view local_part, std::string_view domain,
                                   bool for_delivery,
                                   std::set<std::string>* unread_forwards) const {
  Walk walk;
  walk.for_delivery = for_delivery;
  walk.unread_forwards = unread_forwards;
  const DomainEntry* entry = find_domain(ascii::lower(domain));
  if (entry == nullptr) {
    walk.fail(msg::RouteStatus::failed, "not a local domain: " + std::string(domain));
    return walk.route;
  }
  const std::string local = ascii::lower(local_part);
  const std::string& delimiters = entry->config.recipient_delimiter;
  const size_t split = delimiters.empty() ? std::string::npos : local.find_first_of(delimiters);
  // "+tag" alone has no user to fall back to.
  if (split == std::string::npos || split == 0) {
    expand(walk, local, *entry, 0);
    return walk.route;
  }
  // An exact match always wins: "user+tag" as an alias or a user is used as it is.
  walk.exact_only = true;
  expand(walk, local, *entry, 0);
  if (!walk.missing) return walk.route;
  Walk base;
  base.for_delivery = for_delivery;
  base.unread_forwards = unread_forwards;
  base.extended_local = local;
  expand(base, local.substr(0, split), *entry, 0);
  return base.route;
}

// NOLINTNEXTLINE(misc-no-recursion): aliases nest, bounded by kMaxAliasDepth
void LocalRouter::expand(Walk& walk, const std::string& local, const DomainEntry& domain,
                         int depth) const {
  if (walk.failed()) return;
  const std::string key = local + "@" + domain.config.name;
  if (depth > kMaxAliasDepth) {
    walk.fail(msg::RouteStatus::loop,
              "aliases nested more than " + std::to_string(kMaxAliasDepth) + " deep at " + key);
    return;
  }
  if (std::find(walk.stack.begin(), walk.stack.end(), key) != walk.stack.end()) {
    walk.fail(msg::RouteStatus::loop, "alias loop through " + key);
    return;
  }
  if (domain.config.aliases) {
    auto table = aliases_.find(*domain.config.aliases);
    // Unread (it could not be opened or parsed when lookup started): any name may be an alias
    // in it, so no answer is final until it is (postmaster@ must not bounce for a typo).
    if (table == aliases_.end()) {
      walk.fail(msg::RouteStatus::temporary,
                "aliases " + *domain.config.aliases + " is not loaded");
      return;
    }
    if (const std::vector<AliasTarget>* targets = table->second->find(local)) {
      walk.stack.push_back(key);
      const auto owner = alias_owners_.find(table->first);
      expand_targets(walk, local, domain, *targets,
                     Source{.kind = Source::Kind::aliases,
                            .file = table->first,
                            .aliases_owner = owner == alias_owners_.end() ? 0 : owner->second,
                            .untrusted = ""},
                     depth);
      walk.stack.pop_back();
      return;
    }
  }
  deliver_to_user(walk, local, domain, depth);
}

// NOLINTNEXTLINE(misc-no-recursion): aliases nest, bounded by kMaxAliasDepth
void LocalRouter::expand_targets(Walk& walk, const std::string& local, const DomainEntry& domain,
                                 const std::vector<AliasTarget>& targets, const Source& from,
                                 int depth) const {
  const std::string mailbox = local + "@" + domain.config.name;
  for (const AliasTarget& t : targets) {
    if (walk.failed()) return;
    switch (t.kind) {
      case AliasTarget::Kind::address: {
        const size_t at = t.value.rfind('@');
        const std::string name = ascii::lower(t.value.substr(0, at));
        const std::string where =
            at == std::string::npos ? domain.config.name : ascii::lower(t.value.substr(at + 1));
        const DomainEntry* next = find_domain(where);
        if (next == nullptr) {
          walk.add({msg::DeliveryMethod::forward, t.value, "", mailbox});
        } else if (next == &domain && name == local) {
          // "bob: bob, carol": the alias names itself, meaning the user behind it; in bob's
          // .forward, bob's mailbox.
          deliver_to_user(walk, local, domain, depth, from.kind != Source::Kind::forward);
        } else {
          expand(walk, name, *next, depth + 1);
        }
        break;
      }
      case AliasTarget::Kind::file:
      case AliasTarget::Kind::command: {
        const bool command = t.kind == AliasTarget::Kind::command;
        const AliasRights& rights =
            command ? domain.config.alias_commands : domain.config.alias_files;
        const char* what = command ? "command" : "file";
        std::string refusal;
        if (from.kind == Source::Kind::aliases && !rights.aliases) {
          refusal = std::string(command ? "alias_commands" : "alias_files") +
                    " does not allow the aliases file";
        } else if (from.kind == Source::Kind::include && !rights.include) {
          refusal = std::string(command ? "alias_commands" : "alias_files") +
                    " does not allow :include: files";
        } else if (from.kind == Source::Kind::include) {
          refusal = from.untrusted;
        }
        if (!refusal.empty()) {
          // Named in the log for the administrator; the client learns only 550.
          log::warn("%s for %s in %s refused: %s", what, mailbox.c_str(), from.file.c_str(),
                    refusal.c_str());
          walk.fail(msg::RouteStatus::failed,
                    std::string(what) + " in " + from.file + " refused: " + refusal);
          return;
        }
        // A .forward's command runs, and its file is written, as the user whose file it is.
        walk.add({command ? msg::DeliveryMethod::command : msg::DeliveryMethod::mbox, t.value,
                  from.kind == Source::Kind::forward ? local : "", mailbox});
        break;
      }
      case AliasTarget::Kind::mailbox: {
        // "\name" (only a .forward has it): that user's mailbox, no .forward, no alias.
        deliver_to_user(walk, ascii::lower(t.value), domain, depth + 1, false);
        break;
      }
      case AliasTarget::Kind::include:
        expand_include(walk, local, domain, t.value, from, depth);
        break;
    }
  }
}

// NOLINTNEXTLINE(misc-no-recursion): aliases nest, bounded by kMaxAliasDepth
void LocalRouter::expand_include(Walk& walk, const std::string& local, const DomainEntry& domain,
                                 const std::string& path, const Source& from, int depth) const {
  if (depth > kMaxAliasDepth) {
    walk.fail(msg::RouteStatus::loop, ":include: files nested too deep at " + path);
    return;
  }
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  Result<std::string> text =
      fd ? read_all(fd.get(), kMaxIncludeFile) : Result<std::string>(errno_error(path));
  struct stat st {};
  if (text.ok() && fstat(fd.get(), &st) != 0) text = errno_error(path);
  if (!text.ok()) {
    walk.fail(msg::RouteStatus::temporary, "cannot read :include: file: " + text.error().message);
    return;
  }
  auto list = parse_alias_list(text.value(), path);
  if (!list.ok()) {
    walk.fail(msg::RouteStatus::temporary, list.error().to_string());
    return;
  }
  // Anyone who may write the file may make its items: its commands and files count only when
  // that is root or whoever owns the aliases file (sendmail's and Postfix's rule).
  Source include{.kind = Source::Kind::include,
                 .file = path,
                 .aliases_owner = from.aliases_owner,
                 .untrusted = ""};
  if (!S_ISREG(st.st_mode)) {
    include.untrusted = "not a regular file";
  } else if (st.st_uid != 0 && st.st_uid != from.aliases_owner) {
    include.untrusted =
        "owned by uid " + std::to_string(st.st_uid) + ", neither root nor the aliases file's owner";
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    include.untrusted = "writable by its group or by everyone";
  }
  expand_targets(walk, local, domain, list.value(), include, depth + 1);
}

// NOLINTNEXTLINE(misc-no-recursion): aliases nest, bounded by kMaxAliasDepth
void LocalRouter::deliver_to_user(Walk& walk, const std::string& local, const DomainEntry& domain,
                                  int depth, bool consult_forward) const {
  if (walk.failed()) return;
  const Domain& d = domain.config;
  // postmaster exists in every local domain (RFC 5321 4.5.1), system domains aside: there it
  // is an alias the admin makes.
  const bool postmaster = local == "postmaster";
  bool exists = true;
  const std::optional<UserDelivery>* own = nullptr;
  std::string home;
  if (d.users) {
    exists = postmaster || std::find(d.users->begin(), d.users->end(), local) != d.users->end();
  } else if (d.users_table) {
    auto table = users_.find(*d.users_table);
    // Unread: even postmaster's delivery may be its own row's.
    if (table == users_.end()) {
      walk.fail(msg::RouteStatus::temporary, "users table " + *d.users_table + " is not loaded");
      return;
    }
    own = table->second->find(local, d.name);
    exists = postmaster || own != nullptr;
  } else if (d.system_users) {
    exists = false;
    if (safe_segment(local)) {
      const SystemUsers::Answer user = system_users_.find(local);
      if (user.found == SystemUsers::Found::unknown) {
        walk.fail(msg::RouteStatus::temporary, "cannot look up user " + local + ": " + user.error);
        return;
      }
      exists = user.found == SystemUsers::Found::yes;
      accounts::Policy policy = daemon_accounts_;
      policy.min_uid = d.min_uid;
      if (exists) {
        // root, system accounts and the daemon's own are no mailboxes: the admin aliases
        // them to someone (the parent asks the same rule before it starts a helper).
        if (auto why = accounts::refusal(
                {.name = local, .uid = user.account.uid, .gid = user.account.gid}, policy)) {
          walk.fail(msg::RouteStatus::unknown_user,
                    "mail for " + local + " must be aliased: " + *why);
          return;
        }
        home = user.account.home;
      }
    }
  }
  // The address asked about itself (no alias led here).
  const bool asked = walk.stack.empty() && depth == 0;
  if (!exists && asked && walk.exact_only) {
    walk.missing = true;
    walk.fail(msg::RouteStatus::unknown_user, "no such user: " + local + "@" + d.name);
    return;
  }
  if (!exists) {
    const std::string marker = "*@" + d.name;
    if (d.catch_all &&
        std::find(walk.stack.begin(), walk.stack.end(), marker) == walk.stack.end()) {
      walk.stack.push_back(marker);
      expand_targets(
          walk, local, domain, {AliasTarget{AliasTarget::Kind::address, *d.catch_all}},
          Source{.kind = Source::Kind::catch_all, .file = "", .aliases_owner = 0, .untrusted = ""},
          depth + 1);
      walk.stack.pop_back();
      return;
    }
    walk.fail(msg::RouteStatus::unknown_user, "no such user: " + local + "@" + d.name);
    return;
  }
  if (exists && d.system_users && walk.for_delivery && consult_forward &&
      follow_forward(walk, local, domain, home, depth))
    return;
  msg::Destination dest{
      .method = msg::DeliveryMethod::maildir,
      .target = "",
      .user = d.system_users ? local : "",
      .mailbox =
          (asked && !walk.extended_local.empty() ? walk.extended_local : local) + "@" + d.name};
  std::string templ;
  if (own != nullptr && *own) {
    dest.method = (*own)->method;
    templ = (*own)->target;
  } else if (d.maildir || d.mbox) {
    dest.method = d.maildir ? msg::DeliveryMethod::maildir : msg::DeliveryMethod::mbox;
    templ = d.maildir ? *d.maildir : *d.mbox;
  } else if (d.lmtp) {
    dest.method = msg::DeliveryMethod::lmtp;
    dest.target = *d.lmtp;
  } else if (d.command) {
    dest.method = msg::DeliveryMethod::command;
    dest.target = *d.command;
  } else {
    if (walk.for_delivery)
      walk.fail(msg::RouteStatus::temporary, "no mailbox configured for domain " + d.name);
    return;
  }
  if (!templ.empty()) {
    if (templ.find("%u") != std::string::npos && !safe_segment(local)) {
      walk.fail(msg::RouteStatus::failed, "unsafe mailbox name");
      return;
    }
    dest.target = fill_template(templ, local, d.name, home);
  }
  walk.add(std::move(dest));
}

// NOLINTNEXTLINE(misc-no-recursion): forwards nest, bounded by kMaxAliasDepth
bool LocalRouter::follow_forward(Walk& walk, const std::string& local, const DomainEntry& domain,
                                 const std::string& home, int depth) const {
  const ForwardState* state = forwards_.find(local);
  if (state == nullptr) {
    if (walk.unread_forwards != nullptr) walk.unread_forwards->insert(local);
    walk.fail(msg::RouteStatus::temporary, "the ~/.forward of " + local + " is not read yet");
    return true;
  }
  if (state->kind == ForwardState::Kind::failed) {
    // Never a bounce for a file that may say where the mail should go: later, again.
    walk.fail(msg::RouteStatus::temporary, state->reason);
    return true;
  }
  if (state->kind == ForwardState::Kind::none) return false;
  if (auto why = forward_refusal(state->targets, domain.config)) {
    log_forward_ignored(local, *why);
    return false;
  }
  // Its entries expand as an alias's would, on the same loop stack: bob -> carol -> bob is a
  // loop (expand finds bob on it), whether aliases or .forward files say so.
  walk.stack.push_back(local + "@" + domain.config.name);
  std::vector<AliasTarget> targets = state->targets;  // the cache may change meanwhile
  expand_targets(walk, local, domain, targets,
                 Source{.kind = Source::Kind::forward,
                        .file = (home.ends_with('/') ? home : home + "/") + ".forward",
                        .aliases_owner = 0,
                        .untrusted = ""},
                 depth + 1);
  walk.stack.pop_back();
  return true;
}

}  // namespace postern::lookup
