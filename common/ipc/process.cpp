// The process table; see process.hpp.
#include "common/ipc/process.hpp"

namespace postern {

const ProcessInfo& process_info(Role role) {
  for (const auto& p : kProcesses)
    if (p.role == role) return p;
  return kProcesses[0];
}

std::string_view role_name(Role role) {
  if (role == Role::client) return "client";
  if (role == Role::helper) return "helper";
  return process_info(role).name;
}

std::optional<Role> role_from_name(std::string_view name) {
  for (const auto& p : kProcesses)
    if (p.name == name) return p.role;
  return std::nullopt;
}

bool talks(Role a, Role b) {
  if (a == b) return false;
  for (Role outside : {Role::client, Role::helper})
    if (a == outside || b == outside) return false;
  if (a == Role::parent || b == Role::parent) return true;
  return has_role(process_info(a).peers, b);
}

}  // namespace postern
