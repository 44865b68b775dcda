// File tables; see table.hpp.
#include "lookup/table.hpp"

#include "common/util/ascii.hpp"
#include "common/util/inet.hpp"
#include "mda/api.hpp"

namespace postern::lookup {
namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string TableError::to_string() const {
  return file + ":" + std::to_string(line) + ": " + message;
}

Result<FileTable, TableError> FileTable::parse(std::string_view text, const std::string& file) {
  FileTable table;
  auto& lines = table.lines_;
  auto error = [&](int line, std::string message) {
    return TableError{file, line, std::move(message)};
  };
  if (text.size() > kMaxTableFile) return error(0, "file is larger than 16 MiB");
  int number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxTableLine)
      return error(number, "line longer than " + std::to_string(kMaxTableLine) + " octets");
    for (unsigned char c : line)
      if ((c < 0x20 && c != '\t') || c == 0x7f) return error(number, "control character");
    line = trim_blanks(line);
    if (line.empty() || line.front() == '#') continue;
    size_t key_end = 0;
    while (key_end < line.size() && !is_blank(line[key_end])) ++key_end;
    std::string key = ascii::lower(line.substr(0, key_end));
    const std::string_view value = trim_blanks(line.substr(key_end));
    const auto [first, fresh] = lines.emplace(key, number);
    if (!fresh)
      return error(number, "duplicate key '" + key + "' (first at line " +
                               std::to_string(first->second) + ")");
    table.entries_.emplace(std::move(key), std::string(value));
  }
  return table;
}

int FileTable::line_of(std::string_view key) const {
  auto it = lines_.find(key);
  return it == lines_.end() ? 0 : it->second;
}

const std::string* FileTable::find(std::string_view key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

Result<std::optional<UserDelivery>> parse_user_delivery(std::string_view value) {
  if (value.empty()) return std::optional<UserDelivery>();
  const size_t colon = value.find(':');
  if (colon == std::string_view::npos)
    return make_error("expected maildir:, mbox:, lmtp: or command: before " + std::string(value));
  const std::string_view kind = value.substr(0, colon);
  const std::string_view target = trim_blanks(value.substr(colon + 1));
  if (target.empty()) return make_error("nothing after " + std::string(kind) + ":");
  UserDelivery d;
  d.target = std::string(target);
  if (kind == "maildir" || kind == "mbox") {
    d.method = kind == "maildir" ? msg::DeliveryMethod::maildir : msg::DeliveryMethod::mbox;
    if (target.front() != '/') return make_error(std::string(kind) + " needs an absolute path");
    for (size_t i = 0; i < target.size();) {
      const size_t end = std::min(target.find('/', i), target.size());
      if (target.substr(i, end - i) == "..") return make_error("'..' in a mailbox path");
      i = end + 1;
    }
  } else if (kind == "lmtp") {
    d.method = msg::DeliveryMethod::lmtp;
    if (!target.starts_with("unix:/") &&
        (target.starts_with("unix:") || !inet::parse_socket_address(target)))
      return make_error("lmtp needs unix:/path or IP:port");
  } else if (kind == "command") {
    d.method = msg::DeliveryMethod::command;
  } else {
    return make_error("unknown delivery '" + std::string(kind) +
                      "' (expected maildir, mbox, lmtp or command)");
  }
  return std::optional<UserDelivery>(std::move(d));
}

Result<UserTable, TableError> UserTable::parse(std::string_view text, const std::string& file) {
  auto table = FileTable::parse(text, file);
  if (!table.ok()) return table.error();
  UserTable users;
  auto line_of = [&](const std::string& key) { return table.value().line_of(key); };
  for (const auto& [key, value] : table.value().entries()) {
    const size_t at = key.find('@');
    if (key.empty() || key.size() > 255 || key.find_first_of("%!\"/") != std::string::npos ||
        (at != std::string::npos &&
         (at == 0 || key.find('@', at + 1) != std::string::npos || at + 1 == key.size())))
      return TableError{file, line_of(key),
                        "bad user '" + key + "' (expected user or user@domain)"};
    auto delivery = parse_user_delivery(value);
    if (!delivery.ok()) return TableError{file, line_of(key), delivery.error().message};
    users.users_.emplace(key, std::move(delivery).value());
  }
  return users;
}

const std::optional<UserDelivery>* UserTable::find(std::string_view local_part,
                                                   std::string_view domain) const {
  std::string key(local_part);
  key += '@';
  key += domain;
  if (auto it = users_.find(key); it != users_.end()) return &it->second;
  if (auto it = users_.find(local_part); it != users_.end()) return &it->second;
  return nullptr;
}

}  // namespace postern::lookup
