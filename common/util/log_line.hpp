// The grammar of every log line (docs/logging.md), what writes it and the one strict reader:
//   line    = [level ": "] [subject ": "] field *(", " field) [" (" text ")"]
//   field   = key "=" (bare / quoted)
// Postfix's delivery lines ("ID: to=<a@b>, relay=local, ..., status=sent (text)") are in it
// as they are. Values that are not one plain word are quoted and escaped here, through
// sanitize(): no value, whoever chose its bytes, can add a field or a line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::log {

enum class Level { debug, info, warning, error, fatal };

// "warning", "error"...; the prefix a line at that level starts with ("" for info).
std::string_view level_name(Level level);
std::string_view level_prefix(Level level);

// A value as the grammar writes it: bare when it is a non-empty run of printable ASCII
// without SP, '"', ',', '(', ')' or '\'; otherwise between double quotes, with '"' and '\'
// escaped by '\' and the rest as sanitize() leaves it (\n, \xHH...). Cut to max_length
// octets of content (ending in "...") when longer.
std::string quote(std::string_view value, size_t max_length = 512);

// One event line, built field by field.
class Line {
 public:
  // subject: the message id a queue line is about ("" for none).
  explicit Line(std::string_view subject = {}) : subject_(subject) {}

  Line& add(std::string_view key, std::string_view value);
  Line& number(std::string_view key, uint64_t value);
  // session=<16 hex digits>, as the SMTP frontend numbers sessions.
  Line& session(uint64_t id);
  // The free text after the last field, Postfix's "status=sent (250 2.0.0 Ok)".
  Line& comment(std::string_view text);

  // The line without its level prefix.
  std::string text() const;

  void debug() const;
  void info() const;
  void warn() const;
  void error() const;

 private:
  std::string subject_;
  std::string fields_;
  std::string comment_;
  bool cut_ = false;  // a field was left out to keep the line within kMaxLine
};

// A line read back by the strict grammar; nullopt when it does not follow it.
struct ParsedLine {
  Level level = Level::info;
  std::string subject;
  std::vector<std::pair<std::string, std::string>> fields;  // values unescaped
  std::optional<std::string> comment;
};
std::optional<ParsedLine> parse_line(std::string_view line);

// The line as one JSON object (docs/logging.md): level, subject as "id", each field, the
// comment as "text"; the caller's own members (time, process, pid) come first.
std::string to_json(const ParsedLine& line, std::string_view leading_members);
// A JSON string literal (quotes included) for any bytes: escapes what JSON needs, and
// bytes that are not well-formed UTF-8 as \u00HH of the byte.
std::string json_string(std::string_view text);

}  // namespace postern::log
