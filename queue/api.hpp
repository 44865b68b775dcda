// smtpd-queue's interface: what the other processes send it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/util/fields.hpp"

namespace postern::queue {

// ===== Configuration: the queue's slice of smtpd.yaml, sent by the parent ==================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::kQueueSettingsInfo;
  // The spool as the queue sees it: "/" once chrooted into it (the parent fills it in).
  std::string spool_dir;
  // Domains delivered here (their names, from the domains list): mda's to deliver.
  std::vector<std::string> local_domains;
  std::string hostname;               // names the reporting MTA in bounces
  uint32_t expire = 4 * 86400;        // seconds before undelivered mail bounces
  uint32_t retry_first = 60;          // seconds before the first retry, doubling...
  uint32_t retry_max = 3600;          // ...up to this
  uint32_t delay_warning = 4 * 3600;  // seconds before a delay notification (NOTIFY=DELAY); 0: none
  uint32_t in_delivery = 128;         // messages in delivery at once (scheduler.hpp)

  static constexpr auto fields() {
    using fields::field;
    constexpr fields::Origin kParent = fields::Origin::parent;
    return std::tuple{
        field(&Settings::spool_dir, "spool_dir",
              {.length = msg::kMaxPathLength, .origin = kParent}),
        field(&Settings::local_domains, "local_domains",
              {.length = 253, .count = 100000, .origin = kParent}),
        field(&Settings::hostname, "hostname", {.length = 255, .hook = "hostname"}),
        field(&Settings::expire, "limits.expire",
              {.min = 1, .max = 365 * 86400, .unit = fields::kDays}),
        field(&Settings::retry_first, "limits.retry_first",
              {.min = 1, .max = 86400, .unit = fields::kDays}),
        field(&Settings::retry_max, "limits.retry_max",
              {.min = 1, .max = 7 * 86400, .unit = fields::kDays}),
        field(&Settings::delay_warning, "limits.delay_warning",
              {.min = 0, .max = 365 * 86400, .unit = fields::kDays}),
        field(&Settings::in_delivery, "limits.in_delivery", {.min = 1, .max = 100000}),
    };
  }
  // Checked on both sides: by the configuration check, and by the queue when it decodes.
  bool valid() const {
    return !spool_dir.empty() && spool_dir.front() == '/' && retry_max >= retry_first;
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>());

// ===== End of configuration ================================================================

}  // namespace postern::queue
