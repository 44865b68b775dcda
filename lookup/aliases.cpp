// Parsing of aliases(5) files and :include: lists; see aliases.hpp. Every line is bounded and
// checked, addresses go through the one address grammar (common/address), and the first bad
// line refuses the whole file. Nothing here opens an :include: file or runs a command.
#include "lookup/aliases.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/mail/address.hpp"
#include "common/util/ascii.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::lookup {
namespace {

// A real /etc/aliases is a few KiB; a large site's generated one a few MiB.
constexpr size_t kMaxAliasesFile = size_t{16} << 20;
// One entry with its continuation lines (or one line of an :include: list). Postfix's own
// limit is about this; a longer one is a generated file gone wrong.
constexpr size_t kMaxLogicalLine = size_t{64} << 10;
constexpr size_t kMaxTargets = 10000;
// Defence in depth for parse() on its own: the file size bounds it already.
constexpr size_t kMaxAliases = 1000000;
// A name is matched against a recipient's local part, which is never longer (RFC 5321
// §4.5.3.1.1): a longer name could never be used.
constexpr size_t kMaxName = address::kMaxLocalPart;
// Input echoed in messages is cut to this, so one error stays one readable log line.
constexpr size_t kMaxEcho = 60;

constexpr std::string_view kInclude = ":include:";
constexpr std::string_view kBlanks = " \t\n";  // '\n' joins continuation lines

using Kind = AliasTarget::Kind;

// Items from continuation lines hold the '\n' that joined them: shown as a space.
std::string quoted_excerpt(std::string_view text) {
  size_t cut = text.size();
  if (cut > kMaxEcho) {
    cut = kMaxEcho;
    // Never split a UTF-8 sequence: back up over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  }
  std::string out = "'" + std::string(text.substr(0, cut));
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out + (cut < text.size() ? "...'" : "'");
}

std::string_view trim(std::string_view text) {
  const size_t first = text.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kBlanks) - first + 1);
}

bool is_blank_or_comment(std::string_view line) {
  const size_t first = line.find_first_not_of(" \t");
  return first == std::string_view::npos || line[first] == '#';
}

bool starts_with_include(std::string_view text) {
  return text.size() >= kInclude.size() &&
         ascii::lower(text.substr(0, kInclude.size())) == kInclude;
}

// Tabs are whitespace here; every other control character (NUL, a lone CR, ESC...) would be
// cut off by C strings or forge log lines downstream.
const char* check_bytes(std::string_view line) {
  for (const char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '\0') return "NUL byte";
    if (u != '\t' && ascii::is_control(u)) return "control character";
  }
  return nullptr;
}

// Physical lines with their numbers; a CR before the LF is dropped.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}

  bool next(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    ++number_;
    const size_t newline = text_.find('\n', pos_);
    const size_t end = newline == std::string_view::npos ? text_.size() : newline;
    line = text_.substr(pos_, end - pos_);
    pos_ = newline == std::string_view::npos ? text_.size() : newline + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    return true;
  }
  int number() const { return number_; }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  int number_ = 0;
};

// An error at an offset of the text being split; the caller knows its line.
struct Problem {
  size_t offset = 0;
  std::string message;
};

struct Item {
  std::string_view text;  // trimmed; empty for an empty item
  // Where it starts in the split text; for an empty item, the comma that ends it or, when it
  // is the last, the comma before it: what the reader has to look at.
  size_t offset = 0;
};

// Splits at commas outside double quotes; inside quotes a backslash escapes the next byte. A
// quoted string must end on the line it starts on.
Result<std::vector<Item>, Problem> split_items(std::string_view text, size_t base) {
  std::vector<Item> items;
  size_t start = 0;
  size_t quote = std::string_view::npos;  // offset of the open quote, if any
  auto add = [&](size_t end) {
    const std::string_view raw = text.substr(start, end - start);
    const size_t first = raw.find_first_not_of(kBlanks);
    size_t offset = start + first;
    if (first == std::string_view::npos) offset = end < text.size() || start == 0 ? end : start - 1;
    items.push_back(Item{trim(raw), base + offset});
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote != std::string_view::npos) {
      if (c == '\n') break;
      if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
        ++i;
      } else if (c == '"') {
        quote = std::string_view::npos;
      }
    } else if (c == '"') {
      quote = i;
    } else if (c == ',') {
      add(i);
      start = i + 1;
    }
  }
  if (quote != std::string_view::npos) return Problem{base + quote, "unterminated quoted string"};
  add(text.size());
  return items;
}

// text starts with '"': the content up to the matching quote with escapes resolved, and the
// offset just past that quote (split_items made sure it exists).
std::pair<std::string, size_t> unquote(std::string_view text) {
  std::string out;
  size_t i = 1;
  for (; i < text.size() && text[i] != '"'; ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) ++i;
    out += text[i];
  }
  return {std::move(out), i + 1};
}

Error bad_path(std::string_view what, std::string_view path) {
  return make_error(std::string(what) + " " + quoted_excerpt(path));
}

Result<AliasTarget> path_target(Kind kind, std::string_view path, bool quoted) {
  if (path.empty()) return make_error("empty path after :include:");
  // A relative path would depend on the delivery agent's working directory.
  if (path.front() != '/') return bad_path("relative path (an absolute path is needed):", path);
  if (!quoted && path.find_first_of(kBlanks) != std::string_view::npos)
    return bad_path("whitespace in path (quote the item, or separate items with commas):", path);
  return AliasTarget{kind, std::string(path)};
}

Result<AliasTarget> command_target(std::string_view command) {
  command = trim(command);
  if (command.empty()) return make_error("empty command after '|'");
  return AliasTarget{Kind::command, std::string(command)};
}

Error bad_address(std::string_view text, std::string_view why) {
  return make_error("bad address " + quoted_excerpt(text) + ": " + std::string(why));
}

// local or local@domain, checked by the one address grammar (UTF-8 allowed: the file is the
// administrator's, and whether a route may carry it is decided at delivery).
Result<AliasTarget> address_target(std::string_view text) {
  if (text.starts_with('\\'))
    return bad_address(text, "sendmail's '\\name' (no further expansion) is not supported");
  size_t at = std::string_view::npos;
  bool in_quote = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quote) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_quote = false;
      }
    } else if (c == '"') {
      in_quote = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      return bad_address(text, "whitespace outside quotes (separate items with commas)");
    } else if (c == '@' && at == std::string_view::npos) {
      at = i;
    }
  }
  const bool bare = at == std::string_view::npos;
  // sendmail and Postfix take a local part with '/' for a file: refuse the ambiguity.
  if (bare && text.find('/') != std::string_view::npos)
    return bad_path("relative path (an absolute path is needed):", text);
  // A bare local part goes through the same grammar with a domain that is then dropped.
  auto parsed = bare ? address::parse_mailbox(std::string(text) + "@localhost", true)
                     : address::parse_mailbox(text, true);
  if (!parsed.ok()) return bad_address(text, parsed.error().message);
  address::Mailbox mailbox = std::move(parsed).value();
  const std::string_view local = mailbox.local_part;
  // Its printed form would read back as another kind of target.
  if (local.starts_with('|') || local.starts_with('/') || starts_with_include(local))
    return bad_address(text, "a local part may not start with '|', '/' or ':include:'");
  if (bare) mailbox.domain.clear();
  return AliasTarget{Kind::address, address::to_string(mailbox)};
}

// One non-empty, trimmed right-hand-side item. own_mailboxes: a .forward's "\name", the
// mailbox of name with no further expansion (sendmail's), is taken too.
Result<AliasTarget> parse_item(std::string_view item, bool own_mailboxes) {
  if (own_mailboxes && item.starts_with('\\')) {
    auto name = address_target(item.substr(1));
    if (!name.ok()) return name;
    if (name.value().value.find('@') != std::string::npos)
      return bad_address(item, "'\\' names a local user, without a domain");
    return AliasTarget{Kind::mailbox, name.value().value};
  }
  if (item.front() == '"') {
    auto [content, end] = unquote(item);
    // "a b"@example.org: a quoted local part, not a quoted item.
    if (end != item.size()) return address_target(item);
    const std::string_view inner = content;
    if (inner.starts_with('|')) return command_target(inner.substr(1));
    if (starts_with_include(inner))
      return path_target(Kind::include, trim(inner.substr(kInclude.size())), true);
    if (inner.starts_with('/')) return path_target(Kind::file, inner, true);
    return address_target(item);
  }
  if (item.front() == '|') return command_target(item.substr(1));
  if (starts_with_include(item))
    return path_target(Kind::include, trim(item.substr(kInclude.size())), false);
  if (item.front() == '/') return path_target(Kind::file, item, false);
  if (item.front() == '<') {
    if (item.size() < 2 || item.back() != '>')
      return bad_address(item, "'<' without a closing '>' at the end");
    const std::string_view inner = item.substr(1, item.size() - 2);
    if (inner.empty()) return bad_address(item, "empty address");
    return address_target(inner);
  }
  return address_target(item);
}

// The continuation lines of one entry, joined with '\n', and where each physical line starts.
struct LogicalLine {
  struct Piece {
    size_t offset;
    int line;
  };
  std::string text;
  std::vector<Piece> pieces;

  int line_at(size_t offset) const {
    const auto it = std::upper_bound(pieces.begin(), pieces.end(), offset,
                                     [](size_t o, const Piece& p) { return o < p.offset; });
    return it == pieces.begin() ? pieces.front().line : std::prev(it)->line;
  }
};

struct Name {
  std::string text;  // unquoted, not yet lower-cased
  size_t rest = 0;   // offset just past the ':'
};

Result<Name, Problem> parse_name(std::string_view entry) {
  Name name;
  if (entry.front() == '"') {
    size_t i = 1;
    for (; i < entry.size() && entry[i] != '"' && entry[i] != '\n'; ++i) {
      if (entry[i] == '\\' && i + 1 < entry.size() && entry[i + 1] != '\n') ++i;
      name.text += entry[i];
    }
    if (i >= entry.size() || entry[i] != '"') return Problem{0, "unterminated quoted name"};
    const size_t colon = entry.find_first_not_of(" \t", i + 1);
    if (colon == std::string_view::npos || entry[colon] != ':')
      return Problem{0, "expected ':' after the quoted name"};
    name.rest = colon + 1;
  } else {
    const size_t colon = entry.find(':');
    const size_t newline = entry.find('\n');
    if (colon == std::string_view::npos || colon > newline)
      return Problem{0, "expected 'name: target, ...'"};
    const std::string_view raw = entry.substr(0, colon);
    const size_t last = raw.find_last_not_of(" \t");
    name.text = raw.substr(0, last == std::string_view::npos ? 0 : last + 1);
    name.rest = colon + 1;
    if (name.text.find_first_of(" \t") != std::string::npos)
      return Problem{0, "whitespace in alias name " + quoted_excerpt(name.text) +
                            " (quote the name, or add the missing ':')"};
  }
  if (name.text.empty()) return Problem{0, "empty alias name"};
  if (name.text.find('@') != std::string::npos)
    return Problem{0, "alias name " + quoted_excerpt(name.text) + " may not contain '@'"};
  if (name.text.size() > kMaxName)
    return Problem{0, "alias name longer than " + std::to_string(kMaxName) + " bytes"};
  return name;
}

// Turns split items into targets; an empty item is an error (a trailing one too, unless
// tolerate_trailing, for lists where newlines also separate). The error's offset is the item's.
Result<std::vector<AliasTarget>, Problem> targets_of(const std::vector<Item>& items,
                                                     bool tolerate_trailing, size_t limit_base,
                                                     std::string_view owner,
                                                     bool own_mailboxes = false) {
  std::vector<AliasTarget> targets;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& item = items[i];
    if (item.text.empty()) {
      const bool last = i + 1 == items.size() && i > 0;
      if (last && tolerate_trailing) break;
      return Problem{item.offset, last ? "trailing comma after the last target" : "empty target"};
    }
    if (limit_base + targets.size() == kMaxTargets)
      return Problem{item.offset, std::string(owner) + " has more than " +
                                      std::to_string(kMaxTargets) + " targets"};
    auto target = parse_item(item.text, own_mailboxes);
    if (!target.ok()) return Problem{item.offset, target.error().message};
    targets.push_back(std::move(target).value());
  }
  return targets;
}

struct Table {
  std::unordered_map<std::string, std::vector<AliasTarget>>& aliases;
  std::unordered_map<std::string, int> first_line;
};

std::optional<AliasError> add_entry(const LogicalLine& entry, Table& table,
                                    const std::string& file) {
  const int line = entry.pieces.front().line;
  auto name = parse_name(entry.text);
  if (!name.ok()) return AliasError{file, line, name.error().message};
  const std::string key = ascii::lower(name->text);
  const std::string who = "alias " + quoted_excerpt(key);
  if (const auto it = table.first_line.find(key); it != table.first_line.end())
    return AliasError{file, line,
                      who + ": duplicate entry (first on line " + std::to_string(it->second) + ")"};
  const std::string_view rest = std::string_view(entry.text).substr(name->rest);
  if (trim(rest).empty()) return AliasError{file, line, who + " has no targets"};
  auto items = split_items(rest, name->rest);
  if (!items.ok())
    return AliasError{file, entry.line_at(items.error().offset), items.error().message};
  auto targets = targets_of(items.value(), false, 0, who);
  if (!targets.ok())
    return AliasError{file, entry.line_at(targets.error().offset), targets.error().message};
  if (table.aliases.size() == kMaxAliases)
    return AliasError{file, line, "more than " + std::to_string(kMaxAliases) + " aliases"};
  table.first_line.emplace(key, line);
  table.aliases.emplace(key, std::move(targets).value());
  return std::nullopt;
}

std::string too_long_message() {
  return "line longer than " + std::to_string(kMaxLogicalLine) + " bytes";
}

std::optional<AliasError> check_file(std::string_view text, const std::string& file) {
  if (text.size() > kMaxAliasesFile)
    return AliasError{file, 0, "file too large (more than 16 MiB)"};
  // Otherwise it would silently become part of the first name.
  if (text.starts_with("\xef\xbb\xbf"))
    return AliasError{file, 1, "byte order mark at the start of the file"};
  return std::nullopt;
}

}  // namespace

std::string AliasError::to_string() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ": " + message;
}

Result<AliasTable, AliasError> AliasTable::parse(std::string_view text, const std::string& file) {
  if (auto error = check_file(text, file)) return *error;
  AliasTable result;
  Table table{result.aliases_, {}};
  LogicalLine entry;
  LineReader reader(text);
  std::string_view line;
  while (reader.next(line)) {
    const int number = reader.number();
    if (const char* bad = check_bytes(line)) return AliasError{file, number, bad};
    if (line.size() > kMaxLogicalLine) return AliasError{file, number, too_long_message()};
    // Postfix's rule: comments and blank lines are skipped, even inside an entry; a line that
    // starts with whitespace continues the entry before it.
    if (is_blank_or_comment(line)) continue;
    if (line.front() == ' ' || line.front() == '\t') {
      if (entry.pieces.empty())
        return AliasError{file, number, "continuation line without an entry before it"};
      if (entry.text.size() + 1 + line.size() > kMaxLogicalLine)
        return AliasError{file, number,
                          "entry (with its continuation lines) longer than " +
                              std::to_string(kMaxLogicalLine) + " bytes"};
      entry.text += '\n';
      entry.pieces.push_back({entry.text.size(), number});
      entry.text += line;
      continue;
    }
    if (!entry.pieces.empty()) {
      if (auto error = add_entry(entry, table, file)) return *error;
    }
    entry.text.assign(line);
    entry.pieces.assign(1, {0, number});
  }
  if (!entry.pieces.empty()) {
    if (auto error = add_entry(entry, table, file)) return *error;
  }
  return result;
}

Result<AliasTable, AliasError> AliasTable::load(const std::string& path) {
  auto fail = [&path](std::string message) { return AliasError{path, 0, std::move(message)}; };
  // O_NONBLOCK: a FIFO put in the file's place must not hang the open.
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return fail(errno_error("cannot open").message);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(errno_error("cannot stat").message);
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  auto text = read_all(fd.get(), kMaxAliasesFile);
  if (!text.ok()) return fail(text.error().message);
  return parse(text.value(), path);
}

const std::vector<AliasTarget>* AliasTable::find(std::string_view name) const {
  const auto it = aliases_.find(ascii::lower(name));
  return it == aliases_.end() ? nullptr : &it->second;
}

namespace {

Result<std::vector<AliasTarget>, AliasError> parse_target_list(std::string_view text,
                                                               const std::string& file,
                                                               bool own_mailboxes) {
  if (auto error = check_file(text, file)) return *error;
  std::vector<AliasTarget> targets;
  LineReader reader(text);
  std::string_view line;
  while (reader.next(line)) {
    const int number = reader.number();
    if (const char* bad = check_bytes(line)) return AliasError{file, number, bad};
    if (line.size() > kMaxLogicalLine) return AliasError{file, number, too_long_message()};
    if (is_blank_or_comment(line)) continue;
    auto items = split_items(line, 0);
    if (!items.ok()) return AliasError{file, number, items.error().message};
    auto more = targets_of(items.value(), true, targets.size(), "the list", own_mailboxes);
    if (!more.ok()) return AliasError{file, number, more.error().message};
    for (AliasTarget& target : more.value()) targets.push_back(std::move(target));
  }
  return targets;
}

}  // namespace

Result<std::vector<AliasTarget>, AliasError> parse_alias_list(std::string_view text,
                                                              const std::string& file) {
  return parse_target_list(text, file, false);
}

Result<std::vector<AliasTarget>, AliasError> parse_forward_list(std::string_view text,
                                                                const std::string& file) {
  return parse_target_list(text, file, true);
}

}  // namespace postern::lookup
