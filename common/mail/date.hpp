// Dates as mail headers write them (RFC 5322 3.3), for trace headers and notifications.
#pragma once

#include <ctime>
#include <string>

namespace postern {

// "Mon, 23 Nov 2026 15:10:06 +0000" in local time (tzset() was called before any chroot).
std::string rfc5322_date(time_t when);

}  // namespace postern
