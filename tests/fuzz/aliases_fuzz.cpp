// libFuzzer target for the aliases(5) parser (lookup/aliases.cpp): arbitrary bytes as an aliases
// file and as an :include: list. Beyond the sanitizers it checks that errors point at real lines
// and stay one clean log line, that CRLF reads like LF, that every entry can be found in any
// case, and that a list's targets, written back out, parse to the same targets.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lookup/aliases.hpp"
#include "tests/fuzz/alias_checks.hpp"

namespace {

using postern::lookup::AliasError;
using postern::lookup::AliasTable;
using postern::lookup::AliasTarget;
using postern::lookup::parse_alias_list;
using Kind = AliasTarget::Kind;
using postern::fuzz::check;
using postern::fuzz::count_lines;
using postern::fuzz::is_clean;

const std::string kFile = "fuzz";

void check_error(const AliasError& error, std::string_view text) {
  postern::fuzz::check_error(error, text, kFile);
}

std::string to_crlf(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

std::string quote(std::string_view prefix, std::string_view value) {
  std::string out = "\"" + std::string(prefix);
  for (const char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// One list line that must parse back to targets. The fixed first item keeps an address that
// starts with '#' from opening the line, where it would be a comment.
std::string write_list(const std::vector<AliasTarget>& targets) {
  std::string out = "postmaster";
  for (const AliasTarget& target : targets) {
    out += ", ";
    switch (target.kind) {
      case Kind::address:
        out += target.value;
        break;
      case Kind::file:
        out += quote("", target.value);
        break;
      case Kind::command:
        out += quote("|", target.value);
        break;
      case Kind::include:
        out += quote(":include:", target.value);
        break;
      case Kind::mailbox:  // only a .forward has these
        out += "\\" + target.value;
        break;
    }
  }
  return out + "\n";
}

void check_target(const AliasTarget& target) {
  check(!target.value.empty());
  check(is_clean(target.value));
  if (target.kind == Kind::file || target.kind == Kind::include) check(target.value[0] == '/');
  if (target.kind == Kind::command || target.kind == Kind::include) {
    check(target.value.front() != ' ' && target.value.front() != '\t');
    check(target.value.back() != ' ' && target.value.back() != '\t');
  }
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// Every entry that starts with an unquoted name is in the table, whatever the case asked.
void check_names(const AliasTable& table, std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t newline = text.find('\n', pos);
    std::string_view line = text.substr(pos, newline - pos);
    pos = newline == std::string_view::npos ? text.size() : newline + 1;
    if (line.empty() || line[0] == ' ' || line[0] == '\t' || line[0] == '"') continue;
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] == '#') continue;
    const size_t colon = line.find(':');
    check(colon != std::string_view::npos);
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    const auto* targets = table.find(name);
    check(targets != nullptr && !targets->empty());
    check(table.find(upper(name)) == targets);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool has_cr = text.find('\r') != std::string_view::npos;

  const auto table = AliasTable::parse(text, kFile);
  if (table.ok()) {
    check(table->size() <= static_cast<size_t>(count_lines(text)));
    check_names(table.value(), text);
  } else {
    check_error(table.error(), text);
  }
  if (!has_cr) {
    const std::string crlf = to_crlf(text);
    const auto again = AliasTable::parse(crlf, kFile);
    check(again.ok() == table.ok());
    if (again.ok()) {
      check(again->size() == table->size());
    } else {
      check(again.error().to_string() == table.error().to_string());
    }
  }

  const auto list = parse_alias_list(text, kFile);
  if (!list.ok()) {
    check_error(list.error(), text);
    return 0;
  }
  const std::vector<AliasTarget>& targets = list.value();
  for (const AliasTarget& target : targets) check_target(target);
  const std::string written = write_list(targets);
  if (targets.size() < 10000 && written.size() < 60000) {
    const auto reread = parse_alias_list(written, kFile);
    check(reread.ok());
    check(reread->size() == targets.size() + 1);
    for (size_t i = 0; i < targets.size(); ++i) check(reread.value()[i + 1] == targets[i]);
  }
  return 0;
}
