// Privilege dropping; see privsep.hpp. The order follows what leaves nothing behind:
// chroot while root, bounding set cleared while CAP_SETPCAP is still held, then the id change
// (libcap-ng does setgroups/setresgid/setresuid), then no capability left, then no_new_privs.
#include "common/ipc/privsep.hpp"
#include "common/util/io.hpp"

#include <cap-ng.h>
#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace postern::privsep {
namespace {

// Every uid is uid, the real gid real_gid, the effective and saved ones gid; no
// supplementary group and no capability, bounding set included.
Status check_switched(uid_t uid, gid_t real_gid, gid_t gid) {
  uid_t ruid = 0;
  uid_t euid = 0;
  uid_t suid = 0;
  gid_t rgid = 0;
  gid_t egid = 0;
  gid_t sgid = 0;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0)
    return errno_error("getresuid");
  if (ruid != uid || euid != uid || suid != uid || rgid != real_gid || egid != gid || sgid != gid)
    return make_error("user switch did not hold");
  if (getgroups(0, nullptr) != 0) return make_error("supplementary groups remain");
  capng_get_caps_process();
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE)
    return make_error("capabilities remain after the user switch");
  if (capng_have_capabilities(CAPNG_SELECT_BOUNDS) != CAPNG_NONE)
    return make_error("the capability bounding set is not empty");
  return ok_status();
}

}  // namespace
Status drop_privileges(uid_t uid, gid_t gid, const std::string& jail) {
  if (uid == 0 || gid == 0) return make_error("refusing to run a child as root");
  if (!jail.empty()) {
    if (chroot(jail.c_str()) != 0) return errno_error("chroot " + jail);
    if (chdir("/") != 0) return errno_error("chdir / in " + jail);
  }
  capng_clear(CAPNG_SELECT_BOTH);
  if (capng_change_id(static_cast<int>(uid), static_cast<int>(gid),
                      static_cast<capng_flags_t>(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING)) != 0)
    return errno_error("cannot switch to uid " + std::to_string(uid));

  if (Status st = check_switched(uid, gid, gid); !st.ok()) return st;
  return restrict_unprivileged();
}

Status become_helper_user(uid_t uid, gid_t gid, gid_t real_gid) {
  if (uid == 0 || gid == 0 || real_gid == 0 || real_gid == gid)
    return make_error("refusing to start a helper as root or with real gid equal to its gid");
  capng_clear(CAPNG_SELECT_BOTH);
  if (capng_apply(CAPNG_SELECT_BOUNDS) != 0) return make_error("cannot clear the bounding set");
  if (setgroups(0, nullptr) != 0) return errno_error("setgroups");
  if (setresgid(real_gid, gid, gid) != 0) return errno_error("setresgid");
  if (setresuid(uid, uid, uid) != 0) return errno_error("setresuid");

  if (Status st = check_switched(uid, real_gid, gid); !st.ok()) return st;
  return restrict_unprivileged();
}

Status helper_normalise_ids() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return errno_error("PR_SET_DUMPABLE");
  gid_t rgid = 0;
  gid_t egid = 0;
  gid_t sgid = 0;
  if (getresgid(&rgid, &egid, &sgid) != 0) return errno_error("getresgid");
  if (rgid != egid && setresgid(egid, egid, egid) != 0) return errno_error("setresgid");
  if (getresgid(&rgid, &egid, &sgid) != 0 || rgid != egid || sgid != egid)
    return make_error("group switch did not hold");
  return ok_status();
}

Status restrict_unprivileged() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_error("PR_SET_NO_NEW_PRIVS");
  return ok_status();
}

}  // namespace postern::privsep
