// libFuzzer target for file tables (lookup/table.cpp, lookup/relay_policy.cpp): arbitrary
// bytes as a plain key/value table, as a virtual users table and as a senders table. Beyond the
// sanitizers it checks that an error names a line of the input and that every accepted key can be
// found again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lookup/relay_policy.hpp"
#include "lookup/table.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace postern::lookup;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t lines = 1;
  for (char c : text) lines += c == '\n' ? 1 : 0;
  auto table = FileTable::parse(text, "fuzz");
  if (table.ok()) {
    for (const auto& [key, value] : table.value().entries()) {
      check(table.value().find(key) == &value);
      check(!key.empty());
    }
  } else {
    check(table.error().line >= 1 && static_cast<size_t>(table.error().line) <= lines);
    check(table.error().to_string().find('\n') == std::string::npos);
  }
  auto users = UserTable::parse(text, "fuzz");
  if (!users.ok()) {
    check(users.error().line >= 0 && static_cast<size_t>(users.error().line) <= lines);
  } else {
    check(table.ok());
  }
  // Every login a senders table accepts has at least one grant, each an address or @domain.
  auto senders = SenderTable::parse(text, "fuzz");
  if (senders.ok()) {
    check(table.ok());
    for (const auto& [key, value] : table.value().entries()) {
      const auto* grants = senders.value().grants(key);
      check(grants != nullptr && !grants->empty());
      for (const std::string& g : *grants) check(g.find('@') != std::string::npos);
    }
  } else {
    check(senders.error().line >= 0 && static_cast<size_t>(senders.error().line) <= lines);
  }
  return 0;
}
