// libFuzzer target for the configuration parser (smtpd/config.cpp, common/config): arbitrary bytes
// as smtpd.yaml. Beyond the sanitizers it checks that what parse_config accepts is what the rest
// of the daemon relies on: absolute paths, unique listeners, addresses that round-trip.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "smtpd/config.hpp"

namespace {

using postern::config::ConfigError;
using postern::inet::parse_socket_address;
using postern::smtpd::parse_config;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool absolute(const std::string& path) {
  return !path.empty() && path.front() == '/';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The same bytes as an address on their own: parse_socket_address must never crash either,
  // and whatever it accepts must print and read back as itself.
  if (const auto address = parse_socket_address(text)) {
    const auto again = parse_socket_address(address->to_string());
    check(again.has_value() && *again == *address);
  }
  const auto result = parse_config(text, "fuzz.yaml", "/etc/postern");
  if (!result.ok()) {
    check(!result.error().empty());
    for (const ConfigError& error : result.error()) {
      check(error.line >= 0 && error.column >= 0);
      const std::string line = error.to_string();
      // One error, one line: nothing from the input may start another.
      check(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos);
    }
    return 0;
  }
  const auto& config = result.value();
  check(!config.listeners.empty());
  check(absolute(config.spool_dir) && absolute(config.empty_dir) &&
        absolute(config.control.socket_path));
  std::set<std::string> names;
  std::set<std::string> addresses;
  for (const auto& listener : config.listeners) {
    check(names.insert(listener.name).second);
    const std::string address = listener.address.to_string();
    check(addresses.insert(address).second);
    const auto again = parse_socket_address(address);
    check(again.has_value() && *again == listener.address);
  }
  return 0;
}
