// What the aliases and .forward fuzz targets check of the one list grammar (lookup/aliases.cpp):
// a failed check traps, which libFuzzer reports with the input.
#pragma once

#include <string>
#include <string_view>

#include "lookup/aliases.hpp"

namespace postern::fuzz {

inline void check(bool condition) {
  if (!condition) __builtin_trap();
}

inline int count_lines(std::string_view text) {
  int lines = 1;
  for (const char c : text) lines += c == '\n';
  return lines;
}

// Tabs may be echoed from an item; nothing else below 0x20, and no DEL.
inline bool is_clean(std::string_view text) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

// An error names the file, a line of the text (or 0 for the whole) and stays one clean line.
inline void check_error(const lookup::AliasError& error, std::string_view text,
                        const std::string& file) {
  check(error.file == file);
  check(error.line >= 0 && error.line <= count_lines(text));
  check(!error.message.empty());
  check(is_clean(error.to_string()));
}

}  // namespace postern::fuzz
