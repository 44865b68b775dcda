// Relay domains and sender ownership; see relay_policy.hpp.
#include "lookup/relay_policy.hpp"

#include <algorithm>

#include "common/mail/address.hpp"
#include "common/util/ascii.hpp"

namespace postern::lookup {
namespace {

// Lower case without one trailing dot, the form relay_domains are written in.
std::string comparable(std::string_view domain) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return ascii::lower(domain);
}

std::string_view domain_of(std::string_view address) {
  const size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

}  // namespace

void RelayDomains::configure(const std::vector<std::string>& domains) {
  exact_.clear();
  parents_.clear();
  for (const std::string& d : domains) {
    if (d.starts_with("*."))
      parents_.insert(comparable(std::string_view(d).substr(2)));
    else
      exact_.insert(comparable(d));
  }
}

bool RelayDomains::covers(std::string_view domain) const {
  if (domain.empty() || domain.front() == '[') return false;
  const std::string name = comparable(domain);
  if (exact_.contains(name)) return true;
  // Each parent of the name in turn: a.b.example.org -> b.example.org -> example.org -> org.
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
    if (parents_.contains(std::string_view(name).substr(dot + 1))) return true;
  return false;
}

Result<SenderTable, TableError> SenderTable::parse(std::string_view text, const std::string& file) {
  auto table = FileTable::parse(text, file);
  if (!table.ok()) return table.error();
  SenderTable out;
  for (const auto& [login, value] : table.value().entries()) {
    const int line = table.value().line_of(login);
    std::vector<std::string> grants;
    std::string_view rest = value;
    while (!rest.empty()) {
      const size_t end = rest.find_first_of(" \t,");
      const std::string_view word = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
      if (word.empty()) continue;
      if (word.front() == '@') {
        const auto domain = address::normalize_domain(word.substr(1));
        if (!domain || domain->front() == '[')
          return TableError{file, line, "bad domain in '" + std::string(word) + "'"};
        grants.push_back("@" + *domain);
        continue;
      }
      const auto mailbox = address::parse_mailbox(word, true);
      if (!mailbox.ok()) return TableError{file, line, "bad address '" + std::string(word) + "'"};
      grants.push_back(ascii::lower(address::to_string(mailbox.value())));
    }
    if (grants.empty())
      return TableError{file, line, "no address for '" + login + "' (expected login address...)"};
    out.grants_.emplace(login, std::move(grants));
  }
  return out;
}

const std::vector<std::string>* SenderTable::grants(std::string_view login) const {
  auto it = grants_.find(ascii::lower(login));
  return it == grants_.end() ? nullptr : &it->second;
}

void SenderPolicy::configure(SenderRule rule, const std::vector<Domain>& local_domains,
                             bool has_table) {
  rule_ = rule;
  expects_table_ = has_table && rule == SenderRule::own;
  local_domains_.clear();
  for (const Domain& d : local_domains) local_domains_.insert(d.name);
  // The table comes in its own message after the configuration; without one named, an old
  // table's grants end here.
  if (!has_table) table_.reset();
}

std::optional<std::string> SenderPolicy::refusal(std::string_view login,
                                                 std::string_view sender) const {
  if (rule_ == SenderRule::off || sender.empty()) return std::nullopt;
  const std::string who = ascii::lower(login);
  const std::string address = ascii::lower(sender);
  if (who.find('@') != std::string::npos) {
    if (address == who) return std::nullopt;
  } else if (const size_t at = address.rfind('@');
             at != std::string::npos && std::string_view(address).substr(0, at) == who &&
             local_domains_.contains(std::string_view(address).substr(at + 1))) {
    return std::nullopt;
  }
  if (const std::vector<std::string>* grants = table_ ? table_->grants(who) : nullptr) {
    const std::string domain = "@" + std::string(domain_of(address));
    if (std::any_of(grants->begin(), grants->end(),
                    [&](const std::string& g) { return g == address || g == domain; }))
      return std::nullopt;
  }
  return "user " + std::string(login) + " does not own <" + std::string(sender) + ">";
}

}  // namespace postern::lookup
