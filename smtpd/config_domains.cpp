// The "domains" key of smtpd.yaml, read for the schema walk (see config_key_reader.hpp): each
// domain's name, users (a list, "system" or a table), aliases, catch-all, delivery (maildir,
// mbox, lmtp, command), alias rights, min_uid and recipient_delimiter. Input is untrusted text
// (fuzzed).
#include "smtpd/config_key_reader.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <utility>

#include "common/util/ascii.hpp"

namespace postern::smtpd::hooks {
namespace {

using config::join;
using config::quote;
using config::valid_hostname;

constexpr auto kDomainKeys = config::file_keys<lookup::Domain>();

// A mailbox path template: %u (the local part) and %d (the domain) stand for whole path
// segments, so no recipient can climb out of it; it needs %u unless it starts in the home
// directory of a system user ("~/").
bool valid_mailbox_template(std::string_view path, bool system_users) {
  const bool home = system_users && path.starts_with("~/");
  bool has_user = false;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') continue;
    if (i + 1 >= path.size() || (path[i + 1] != 'u' && path[i + 1] != 'd')) return false;
    if (i == 0 || path[i - 1] != '/' || (i + 2 < path.size() && path[i + 2] != '/')) return false;
    has_user = has_user || path[i + 1] == 'u';
    ++i;
  }
  return has_user || home;
}

// Characters a recipient_delimiter may hold: the specials of RFC 5322's atext that Postern
// does not refuse in a local part ('%', '!' and '/' route elsewhere or name paths).
constexpr std::string_view kDelimiterCharacters = "+-_.=#~&*$'^`{}|?";

bool valid_recipient_delimiter(std::string_view delimiters) {
  return delimiters.size() <= lookup::kMaxRecipientDelimiters &&
         std::all_of(delimiters.begin(), delimiters.end(),
                     [](char c) { return kDelimiterCharacters.find(c) != std::string_view::npos; });
}

}  // namespace

// "example.org" or {name: example.org, users: [alice, bob]}.
void KeyReader::walk_domains(const MapEntry& entry, std::vector<lookup::Domain>& domains) {
  const Node& value = entry.value;
  if (value.kind == Node::Kind::invalid) return;
  if (value.kind != Node::Kind::sequence) {
    walk_.at(value.mark, "'domains' must be a list");
    return;
  }
  std::map<std::string, int, std::less<>> lines;
  for (const Node& item : value.items) {
    if (item.kind == Node::Kind::invalid) continue;
    const Node* name_node = &item;
    lookup::Domain d;
    // The keys naming table files, remembered under the domain's name for the checks of
    // the files themselves (smtpd/preflight.cpp).
    const MapEntry* users_entry = nullptr;
    const MapEntry* aliases_entry = nullptr;
    if (item.kind == Node::Kind::mapping) {
      const auto fields = check_keys(item, "domain", kDomainKeys);
      users_entry = fields[1];
      aliases_entry = fields[2];
      if (fields[0] == nullptr) {
        walk_.at(item.mark, "domain has no 'name'");
        continue;
      }
      name_node = &fields[0]->value;
      if (fields[1] != nullptr && !walk_users(*fields[1], d)) continue;
      bool ok = true;
      if (const MapEntry* e = fields[2]) {
        std::string path;
        if (path_value(*e, path)) {
          d.aliases = std::move(path);
        } else {
          ok = false;
        }
      }
      if (const MapEntry* e = fields[3]) {
        auto target = string_value(*e);
        if (target && !target->empty() && target->size() <= 254 &&
            target->find_first_of(" \t\r\n,:\"|/") == std::string::npos) {
          d.catch_all = std::move(*target);
        } else {
          if (target)
            walk_.at(e->value.mark, "bad 'catch_all' " + quote(*target) +
                                        " (expected a local part or an address)");
          ok = false;
        }
      }
      for (size_t k = 4; k <= 5; ++k) {
        if (fields[k] == nullptr) continue;
        std::string path;
        auto text = string_value(*fields[k]);
        // "~/" (system users only) is the recipient's home, resolved at delivery.
        if (text && d.system_users && text->starts_with("~/")) {
          path = *text;
        } else if (!path_value(*fields[k], path)) {
          ok = false;
          continue;
        }
        if (!valid_mailbox_template(path, d.system_users)) {
          walk_.at(fields[k]->value.mark,
                   quote(fields[k]->key.text) +
                       (d.system_users ? " must start with ~/ or hold %u as a whole path segment, "
                                         "such as ~/Maildir or /var/mail/%u"
                                       : " needs %u standing for a whole path segment, such as "
                                         "/var/mail/%u"));
          ok = false;
          continue;
        }
        (k == 4 ? d.maildir : d.mbox) = std::move(path);
      }
      if (const MapEntry* e = fields[6]) {
        if (auto target = string_value(*e)) {
          if (target->starts_with("unix:/") ||
              (!target->starts_with("unix:") && inet::read_socket_address(*target))) {
            d.lmtp = std::move(*target);
          } else {
            walk_.at(e->value.mark,
                     "bad 'lmtp' target " + quote(*target) + " (expected unix:/path or IP:port)");
            ok = false;
          }
        } else {
          ok = false;
        }
      }
      if (const MapEntry* e = fields[7]) {
        auto command = string_value(*e);
        if (command && !command->empty() &&
            std::none_of(command->begin(), command->end(),
                         [](unsigned char c) { return ascii::is_control(c); })) {
          d.command = std::move(*command);
        } else {
          if (command)
            walk_.at(e->value.mark,
                     "'command' must be a non-empty command line without control "
                     "characters");
          ok = false;
        }
      }
      if (fields[8] != nullptr && !walk_alias_rights(*fields[8], d.alias_commands)) ok = false;
      if (fields[9] != nullptr && !walk_alias_rights(*fields[9], d.alias_files)) ok = false;
      if (const MapEntry* e = fields[10]) {
        if (!d.system_users) {
          walk_.at(e->key.mark, "'min_uid' applies to domains with 'users: system'");
          ok = false;
        } else if (auto n = number_value(*e, "", 0xfffffffe)) {
          d.min_uid = static_cast<uint32_t>(*n);
        } else {
          ok = false;
        }
      }
      if (const MapEntry* e = fields[11]) {
        auto delimiters = string_value(*e);
        if (delimiters && valid_recipient_delimiter(*delimiters)) {
          d.recipient_delimiter = std::move(*delimiters);
        } else {
          if (delimiters)
            walk_.at(e->value.mark,
                     "bad 'recipient_delimiter' " + quote(*delimiters) + " (expected up to " +
                         std::to_string(lookup::kMaxRecipientDelimiters) + " of the characters " +
                         std::string(kDelimiterCharacters) + ", or \"\")");
          ok = false;
        }
      }
      if ((d.maildir ? 1 : 0) + (d.mbox ? 1 : 0) + (d.lmtp ? 1 : 0) + (d.command ? 1 : 0) > 1) {
        walk_.at(item.mark, "a domain is delivered one way: maildir, mbox, lmtp or command");
        ok = false;
      }
      if (!ok) continue;
    }
    if (name_node->kind != Node::Kind::scalar) {
      walk_.at(name_node->mark, "each domain must be a name or a mapping with name and users");
      continue;
    }
    const Node& name = *name_node;
    std::string domain = name.text;
    std::transform(domain.begin(), domain.end(), domain.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    if (!valid_hostname(domain)) {
      walk_.at(name.mark,
               "invalid domain " + quote(name.text) + " (expected letters, digits, '-' and '.')");
      continue;
    }
    const auto [first, fresh] = lines.emplace(domain, name.mark.line);
    if (!fresh) {
      walk_.at(name.mark, "duplicate domain " + quote(domain) + " (first at line " +
                              std::to_string(first->second) + ")");
      continue;
    }
    if (users_entry != nullptr) walk_.remember("domains." + domain + ".users", *users_entry);
    if (aliases_entry != nullptr) walk_.remember("domains." + domain + ".aliases", *aliases_entry);
    d.name = std::move(domain);
    domains.push_back(std::move(d));
  }
}

// Where aliases may name commands or files: a list of "aliases" and "include", [] for
// nowhere.
bool KeyReader::walk_alias_rights(const MapEntry& entry, lookup::AliasRights& rights) {
  const Node& value = entry.value;
  if (value.kind != Node::Kind::sequence) {
    walk_.at(value.mark,
             quote(entry.key.text) + " must be a list such as [aliases] or [aliases, include]");
    return false;
  }
  rights = lookup::AliasRights{.aliases = false, .include = false};
  bool ok = true;
  for (const Node& item : value.items) {
    if (item.kind == Node::Kind::scalar && item.text == lookup::kAliasSourceNames[0]) {
      rights.aliases = true;
    } else if (item.kind == Node::Kind::scalar && item.text == lookup::kAliasSourceNames[1]) {
      rights.include = true;
    } else {
      walk_.at(item.mark,
               "expected one of " + join(lookup::kAliasSourceNames) +
                   (item.kind == Node::Kind::scalar ? ", not " + quote(item.text) : std::string()));
      ok = false;
    }
  }
  return ok;
}

// A list of local parts, "system" or the path of a virtual users table.
bool KeyReader::walk_users(const MapEntry& entry, lookup::Domain& domain) {
  const Node& value = entry.value;
  if (value.kind == Node::Kind::scalar) {
    if (value.text == "system") {
      domain.system_users = true;
      return true;
    }
    std::string path;
    if (!path_value(entry, path)) return false;
    domain.users_table = std::move(path);
    return true;
  }
  if (value.kind != Node::Kind::sequence) {
    walk_.at(value.mark, "'users' must be a list of local parts, 'system' or a table file");
    return false;
  }
  std::vector<std::string> users;
  bool ok = true;
  for (const Node& u : value.items) {
    if (u.kind != Node::Kind::scalar || u.text.empty() || u.text.size() > 64 ||
        u.text.find_first_of("@%! \t\"") != std::string::npos) {
      walk_.at(u.mark, "invalid user (expected a local part such as 'alice')");
      ok = false;
      continue;
    }
    std::string name = u.text;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    users.push_back(std::move(name));
  }
  if (ok) domain.users = std::move(users);
  return ok;
}

}  // namespace postern::smtpd::hooks
