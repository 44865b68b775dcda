// smtpd-mda's interface: what the other processes send it.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include "common/ipc/messages.hpp"
#include "common/util/fields.hpp"

namespace postern::mda {

// ===== Configuration: mda's slice of smtpd.yaml, sent by the parent ========================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::kMdaSettingsInfo;
  std::string hostname;             // in Maildir file names, and LHLO
  uint32_t delivery_timeout = 300;  // seconds a delivery command may run
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Settings::hostname, "hostname", {.length = 255, .hook = "hostname"}),
        field(&Settings::delivery_timeout, "limits.delivery_timeout",
              {.min = 1, .max = 86400, .unit = fields::kHours}),
    };
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>());

// ===== End of configuration ================================================================

}  // namespace postern::mda
