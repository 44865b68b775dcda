// The seccomp allowlist each child installs after dropping privileges (Linux). A system call
// outside its role's list kills the process with SIGSYS, after writing the call's number to
// stderr, so that a compromised process can do little more than its job.
#pragma once

#include "common/ipc/process.hpp"
#include "common/util/result.hpp"

namespace postern::sandbox {

// Installs the filter for role; no_new_privs must already be set. (Tests install it in a forked
// process and try what a compromised process would.) Elsewhere than Linux it
// does nothing and succeeds.
Status install_syscall_filter(Role role);

}  // namespace postern::sandbox
