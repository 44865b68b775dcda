// Configuration vocabulary the IPC layer shares with the parent and smtp: the roles a
// listener may have. The configuration itself is declared by each process (its api.hpp) and
// gathered by the parent (smtpd/config.hpp); the file is read by tree.hpp and schema.hpp.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace postern::config {

enum class ListenerRole : uint8_t { smtp, submission, smtps };
constexpr uint32_t kListenerRoleCount = 3;
constexpr std::array<std::string_view, kListenerRoleCount> kListenerRoleNames = {
    "smtp", "submission", "smtps"};

constexpr std::string_view listener_role_name(ListenerRole role) {
  const auto index = static_cast<size_t>(role);
  return index < kListenerRoleNames.size() ? kListenerRoleNames[index] : "unknown";
}

}  // namespace postern::config
