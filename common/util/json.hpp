// JSON text for smtpctl's --json views (docs/smtpctl-json.md): one object per line, written by
// the process that owns the data. Only writes; nothing in the daemon parses JSON. Any bytes
// in: what is not well-formed UTF-8 becomes U+FFFD, so every line is valid JSON (RFC 8259).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "common/util/utf8.hpp"

namespace postern::json {

// text as a JSON string, quotes included.
inline std::string quote(std::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t n = utf8_sequence(text, i);
    if (n == 0) {  // not UTF-8 (or a C1 control): the replacement character
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(text.substr(i, n));
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
    i += n;
  }
  return out + "\"";
}

// An object written member by member: Object o; o.add("id", "x").add("size", 3); o.text().
class Object {
 public:
  Object& add(std::string_view name, std::string_view value) { return raw(name, quote(value)); }
  Object& add(std::string_view name, const char* value) {
    return add(name, std::string_view(value));
  }
  Object& add(std::string_view name, const std::string& value) {
    return add(name, std::string_view(value));
  }
  Object& add(std::string_view name, bool value) { return raw(name, value ? "true" : "false"); }
  Object& add(std::string_view name, int64_t value) { return raw(name, std::to_string(value)); }
  Object& add(std::string_view name, uint64_t value) { return raw(name, std::to_string(value)); }
  Object& add(std::string_view name, uint32_t value) { return raw(name, std::to_string(value)); }
  // A value that is JSON already (an array or object built by the caller).
  Object& raw(std::string_view name, std::string_view json) {
    text_ += text_.empty() ? "{" : ",";
    text_ += quote(name);
    text_ += ':';
    text_ += json;
    return *this;
  }
  std::string text() const { return text_.empty() ? "{}" : text_ + "}"; }

 private:
  std::string text_;
};

// A JSON array of values already written as JSON.
class Array {
 public:
  Array& raw(std::string_view json) {
    text_ += text_.empty() ? "[" : ",";
    text_ += json;
    return *this;
  }
  std::string text() const { return text_.empty() ? "[]" : text_ + "]"; }

 private:
  std::string text_;
};

}  // namespace postern::json
