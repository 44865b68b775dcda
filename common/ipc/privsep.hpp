// Dropping privileges for good: chroot, user and groups, capabilities, no_new_privs.
// Called by every child when the parent says Start, before it reads any outside input.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/util/result.hpp"

namespace postern::privsep {

// As root: chroot to jail (when not empty), clear the capability bounding set, switch to
// uid/gid with no supplementary groups, clear every capability, set no_new_privs, and check
// that each step held. Any failure is reported; the caller must not continue.
Status drop_privileges(uid_t uid, gid_t gid, const std::string& jail);

// As root, in the forked child that is about to exec a delivery helper: the same as
// drop_privileges without a jail, except that the real gid becomes real_gid (which must
// differ from gid). execve makes a process whose real and effective ids differ non-dumpable
// (fs.suid_dumpable, 0 or 2, both of which keep the user's other processes from ptrace and
// pidfd_getfd), so the helper is out of its user's reach from its first instruction; it
// then sets its real gid back to gid (helper_normalise_ids).
Status become_helper_user(uid_t uid, gid_t gid, gid_t real_gid);

// In the helper, first thing: not dumpable (again), then every gid = the effective gid.
Status helper_normalise_ids();

// For an unprivileged run (a developer or a test): only no_new_privs.
Status restrict_unprivileged();

}  // namespace postern::privsep
