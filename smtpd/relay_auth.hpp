// The credentials files named by routes' `auth` (smtpd.yaml), read by the parent as root at
// start and on every reload: the mta gets the login and password they hold in its settings
// and never opens a file. The file is one line "login:password" (the password may contain
// ':'); blank lines and lines starting with '#' are skipped.
#pragma once

#include "common/util/result.hpp"
#include "mta/api.hpp"

namespace postern::smtpd {

// Fills each route's auth_login and auth_password from its auth file; the error names the
// file and what is wrong with it (never its contents).
Status load_relay_credentials(mta::Settings& settings);

}  // namespace postern::smtpd
