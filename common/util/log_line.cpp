// The log line grammar: the one sanitizer, quoting, lines built field by field, the strict
// reader and JSON; see log_line.hpp. Input is whatever a caller logs (a client's address, a
// remote server's reply); output is always one line of printable text.
#include "common/util/log_line.hpp"

#include "common/util/log.hpp"
#include "common/util/utf8.hpp"

namespace postern::log {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::string_view kCut = "...";

// Appends text made safe (see sanitize()) to out, at most max octets of it, cut with "..."
// when longer; with quoting, '"' and '\' are escaped too. Pieces are never split, so a cut
// leaves no half escape.
void escape_into(std::string& out, std::string_view text, size_t max, bool quoting) {
  const size_t start = out.size();
  size_t cut_at = start;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::string_view piece;
    char buffer[4] = {'\\', 'x', 0, 0};
    size_t used = 1;
    if (c == '\n') {
      piece = "\\n";
    } else if (c == '\r') {
      piece = "\\r";
    } else if (c == '\t') {
      piece = "\\t";
    } else if (quoting && c == '"') {
      piece = "\\\"";
    } else if (quoting && c == '\\') {
      piece = "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      piece = text.substr(i, 1);
    } else if (const size_t n = utf8_sequence(text, i); n > 1) {
      piece = text.substr(i, n);  // (not a C1 control: those are escaped byte by byte)
      used = n;
    } else {
      buffer[2] = kHex[c >> 4];
      buffer[3] = kHex[c & 0xf];
      piece = std::string_view(buffer, 4);
    }
    // The last place a cut fits, should the whole text turn out too long.
    if (out.size() - start <= max - kCut.size()) cut_at = out.size();
    out += piece;
    i += used;
    if (out.size() - start > max) {
      out.resize(cut_at);
      out += kCut;
      return;
    }
  }
}

bool bare_char(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != '(' && c != ')' && c != '\\';
}

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// What may stand in a line at all: printable ASCII and well-formed UTF-8 (what escape_into
// leaves). Returns the length of the piece at i, 0 for a byte that may not.
size_t text_piece(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c >= 0x20 && c < 0x7f) return 1;
  const size_t n = utf8_sequence(s, i);
  return n > 1 ? n : 0;
}

// Reads a quoted value at s[i] == '"'; i ends past the closing quote.
std::optional<std::string> read_quoted(std::string_view s, size_t& i) {
  std::string value;
  for (++i; i < s.size();) {
    const char c = s[i];
    if (c == '"') {
      ++i;
      return value;
    }
    if (c == '\\') {
      if (i + 1 >= s.size()) return std::nullopt;
      const char e = s[i + 1];
      if (e == '"' || e == '\\') {
        value += e;
      } else if (e == 'n') {
        value += '\n';
      } else if (e == 'r') {
        value += '\r';
      } else if (e == 't') {
        value += '\t';
      } else if (e == 'x' && i + 3 < s.size() && hex_value(s[i + 2]) >= 0 &&
                 hex_value(s[i + 3]) >= 0) {
        value += static_cast<char>(hex_value(s[i + 2]) * 16 + hex_value(s[i + 3]));
        i += 2;
      } else {
        return std::nullopt;
      }
      i += 2;
      continue;
    }
    const size_t n = text_piece(s, i);
    if (n == 0) return std::nullopt;
    value.append(s.substr(i, n));
    i += n;
  }
  return std::nullopt;  // no closing quote
}

}  // namespace

std::string_view level_name(Level level) {
  switch (level) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warning:
      return "warning";
    case Level::error:
      return "error";
    case Level::fatal:
      return "fatal";
  }
  return "info";
}

std::string_view level_prefix(Level level) {
  switch (level) {
    case Level::debug:
      return "debug: ";
    case Level::info:
      return "";
    case Level::warning:
      return "warning: ";
    case Level::error:
      return "error: ";
    case Level::fatal:
      return "fatal: ";
  }
  return "";
}

std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxLine));
  escape_into(out, text, kMaxLine, false);
  return out;
}

std::string quote(std::string_view value, size_t max_length) {
  bool bare = !value.empty() && value.size() <= max_length;
  for (const char c : value) bare = bare && bare_char(static_cast<unsigned char>(c));
  if (bare) return std::string(value);
  std::string out = "\"";
  escape_into(out, value, max_length, true);
  out += '"';
  return out;
}

Line& Line::add(std::string_view key, std::string_view value) {
  std::string field = std::string(key) + "=" + quote(value);
  // Room for the prefix, the subject and the comment's share: a line never passes kMaxLine.
  if (fields_.size() + field.size() + 2 > kMaxLine / 2 + kMaxLine / 4) {
    cut_ = true;
    return *this;
  }
  if (!fields_.empty()) fields_ += ", ";
  fields_ += field;
  return *this;
}

Line& Line::number(std::string_view key, uint64_t value) {
  return add(key, std::to_string(value));
}

Line& Line::session(uint64_t id) {
  char text[17];
  for (int k = 15; k >= 0; --k, id >>= 4) text[k] = kHex[id & 0xf];
  text[16] = 0;
  return add("session", text);
}

Line& Line::comment(std::string_view text) {
  comment_.clear();
  escape_into(comment_, text, kMaxLine / 4 - 8, false);
  return *this;
}

std::string Line::text() const {
  std::string out;
  if (!subject_.empty()) out = quote(subject_, 64) + ": ";
  out += fields_;
  if (cut_) out += std::string(fields_.empty() ? "" : ", ") + "cut=yes";
  if (!comment_.empty()) out += " (" + comment_ + ")";
  return out;
}

void Line::debug() const {
  if (verbose()) write(Level::debug, text());
}
void Line::info() const {
  write(Level::info, text());
}
void Line::warn() const {
  write(Level::warning, text());
}
void Line::error() const {
  write(Level::error, text());
}

std::optional<ParsedLine> parse_line(std::string_view line) {
  const std::string_view s = line;
  ParsedLine out;
  size_t i = 0;
  // Up to two prefixes: a level, then a subject; each a word followed by ": ".
  for (int prefixes = 0; prefixes < 2; ++prefixes) {
    size_t end = i;
    while (end < s.size() && (key_char(s[end]) || (s[end] >= 'A' && s[end] <= 'F'))) ++end;
    if (end == i || s.substr(end, 2) != ": ") break;
    const std::string_view word = s.substr(i, end - i);
    bool is_level = false;
    if (prefixes == 0 && out.subject.empty()) {
      for (Level l : {Level::debug, Level::warning, Level::error, Level::fatal}) {
        if (word == level_name(l)) {
          out.level = l;
          is_level = true;
        }
      }
    }
    if (!is_level) {
      if (!out.subject.empty()) return std::nullopt;
      out.subject = std::string(word);
    }
    i = end + 2;
  }
  for (;;) {
    size_t end = i;
    while (end < s.size() && key_char(s[end])) ++end;
    if (end == i || end >= s.size() || s[end] != '=') return std::nullopt;
    std::string key(s.substr(i, end - i));
    i = end + 1;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      std::optional<std::string> quoted = read_quoted(s, i);
      if (!quoted) return std::nullopt;
      value = std::move(*quoted);
    } else {
      const size_t from = i;
      while (i < s.size() && bare_char(static_cast<unsigned char>(s[i]))) ++i;
      if (i == from) return std::nullopt;
      value = std::string(s.substr(from, i - from));
    }
    out.fields.emplace_back(std::move(key), std::move(value));
    if (i == s.size()) return out;
    if (s.substr(i, 2) == ", ") {
      i += 2;
      continue;
    }
    if (s.substr(i, 2) != " (" || s.back() != ')') return std::nullopt;
    const std::string_view text = s.substr(i + 2, s.size() - i - 3);
    for (size_t k = 0; k < text.size();) {
      const size_t n = text_piece(text, k);
      if (n == 0) return std::nullopt;
      k += n;
    }
    out.comment = std::string(text);
    return out;
  }
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else if (const size_t n = utf8_sequence(text, i); n > 1) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    } else {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
    ++i;
  }
  out += '"';
  return out;
}

std::string to_json(const ParsedLine& line, std::string_view leading_members) {
  std::string out = "{";
  out += leading_members;
  if (!leading_members.empty()) out += ',';
  out += "\"level\":" + json_string(level_name(line.level));
  if (!line.subject.empty()) out += ",\"id\":" + json_string(line.subject);
  for (const auto& [key, value] : line.fields) {
    // The fixed members keep their meaning: a field of the same name is renamed.
    const bool taken = key == "time" || key == "process" || key == "pid" || key == "level" ||
                       key == "id" || key == "text";
    out += ',' + json_string(taken ? "field_" + key : key) + ':' + json_string(value);
  }
  if (line.comment) out += ",\"text\":" + json_string(*line.comment);
  out += '}';
  return out;
}

}  // namespace postern::log
