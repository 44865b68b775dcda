// The process table: every Postern process, its executable, which system user it runs as,
// where it is chrooted and whom it talks to. One place, read by the parent (to spawn and wire)
// and by every child (to know its peers).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace postern {

// The order is the wire value; append only.
// client: smtpctl on the control socket; helper: a delivery helper running as a system user,
// spawned by the parent for mda (neither is in the process table).
enum class Role : uint8_t { parent, smtp, queue, mda, mta, lookup, control, client, helper };
constexpr uint32_t kRoleCount = 9;

using RoleMask = uint32_t;
constexpr RoleMask role_bit(Role r) {
  return RoleMask{1} << static_cast<uint32_t>(r);
}
template <typename... R>
constexpr RoleMask roles(R... r) {
  return (role_bit(r) | ...);
}
constexpr bool has_role(RoleMask mask, Role r) {
  return (mask & role_bit(r)) != 0;
}

constexpr std::array<Role, 6> kChildRoles = {Role::smtp,   Role::mda,   Role::mta,
                                             Role::lookup, Role::queue, Role::control};
constexpr RoleMask kAnyChild =
    roles(Role::smtp, Role::queue, Role::mda, Role::mta, Role::lookup, Role::control);

// Which system user a child runs as when started by root.
enum class RunAs { smtpd_user, queue_user, virtual_user };
// Where a child is chrooted when started by root.
enum class Jail { none, empty_dir, spool_dir };

struct ProcessInfo {
  Role role;
  std::string_view name;        // in logs and smtpctl output
  std::string_view executable;  // in libexecdir (empty for the parent)
  RunAs run_as;
  Jail jail;
  RoleMask peers;  // children it has a direct channel with (the parent is implicit)
};

// Peers follow DESIGN.md; the relation is symmetric (checked by a unit test).
constexpr std::array<ProcessInfo, 7> kProcesses = {{
    {Role::parent, "parent", "", RunAs::smtpd_user, Jail::none, 0},
    {Role::smtp, "smtp", "smtpd-smtp", RunAs::smtpd_user, Jail::empty_dir,
     roles(Role::queue, Role::lookup, Role::control)},
    {Role::queue, "queue", "smtpd-queue", RunAs::queue_user, Jail::spool_dir,
     roles(Role::smtp, Role::mda, Role::mta, Role::lookup, Role::control)},
    {Role::mda, "mda", "smtpd-mda", RunAs::virtual_user, Jail::none,
     roles(Role::queue, Role::lookup, Role::control)},
    {Role::mta, "mta", "smtpd-mta", RunAs::smtpd_user, Jail::empty_dir,
     roles(Role::queue, Role::lookup, Role::control)},
    {Role::lookup, "lookup", "smtpd-lookup", RunAs::smtpd_user, Jail::none,
     roles(Role::smtp, Role::queue, Role::mda, Role::mta, Role::control)},
    {Role::control, "control", "smtpd-control", RunAs::smtpd_user, Jail::empty_dir,
     roles(Role::smtp, Role::queue, Role::mda, Role::mta, Role::lookup)},
}};

const ProcessInfo& process_info(Role role);
std::string_view role_name(Role role);
std::optional<Role> role_from_name(std::string_view name);
bool talks(Role a, Role b);

// A child finds its channel to the parent here after exec.
constexpr int kParentChannelFd = 3;
// The delivery helper (smtpd-deliver) finds its channel to the parent on the same descriptor.
constexpr std::string_view kHelperExecutable = "smtpd-deliver";

}  // namespace postern
