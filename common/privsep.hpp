// Dropping privileges for good: chroot, user and groups, capabilities, no_new_privs.
// Called by every child when the parent says Start, before it reads any outside input.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.hpp"

namespace postern::privsep {

// As root: chroot to jail (when not empty), clear the capability bounding set, switch to
// uid/gid with no supplementary groups, clear every capability, set no_new_privs, and check
// that each step held. Any failure is reported; the caller must not continue.
Status drop_privileges(uid_t uid, gid_t gid, const std::string& jail);

// For an unprivileged run (a developer or a test): only no_new_privs.
Status restrict_unprivileged();

}  // namespace postern::privsep
