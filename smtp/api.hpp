// smtpd-smtp's interface: what the other processes send it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include "common/ipc/messages.hpp"
#include "common/util/fields.hpp"

namespace postern::smtp {

// ===== Configuration: smtp's slice of smtpd.yaml, sent by the parent =======================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

// Bounds on what one client may make Postern do; each has this one name and default.
struct Limits {
  uint64_t message_size = 35 * 1024 * 1024;  // octets, as SIZE advertises
  uint32_t recipients = 1000;                // per transaction
  uint32_t errors = 10;                      // bad commands in one session before 421
  uint32_t sessions = 1000;                  // concurrent SMTP sessions
  uint32_t sessions_per_ip = 50;             // concurrent sessions from one address
  uint32_t command_timeout = 300;            // seconds; RFC 5321 4.5.3.2.7
  uint32_t data_timeout = 180;               // seconds between DATA blocks; 4.5.3.2.5
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Limits::message_size, "message_size",
              {.min = 1, .max = uint64_t{1} << 40, .unit = fields::kOctets}),
        field(&Limits::recipients, "recipients", {.min = 1, .max = 1000000}),
        field(&Limits::errors, "errors", {.min = 1, .max = 1000}),
        field(&Limits::sessions, "sessions", {.min = 1, .max = 1000000}),
        field(&Limits::sessions_per_ip, "sessions_per_ip", {.min = 1, .max = 1000000}),
        field(&Limits::command_timeout, "command_timeout",
              {.min = 1, .max = 86400, .unit = fields::kHours}),
        field(&Limits::data_timeout, "data_timeout",
              {.min = 1, .max = 86400, .unit = fields::kHours}),
    };
  }
  friend bool operator==(const Limits&, const Limits&) = default;
};

constexpr size_t kMaxHostname = 255;

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::kSmtpSettingsInfo;
  std::string hostname;  // the file's, or the machine's host name
  Limits limits;
  bool auth = false;  // a credentials table is configured: AUTH may be offered
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Settings::hostname, "hostname", {.length = kMaxHostname, .hook = "hostname"}),
        field(&Settings::limits, "limits"),
        field(&Settings::auth, "auth", {.origin = fields::Origin::parent}),
    };
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>() && fields::well_formed<Limits>());

// The server certificate chain and key for STARTTLS and smtps, read by the parent from the
// files of the tls section; empty strings: no TLS.
constexpr size_t kMaxPem = 28 * 1024;
struct TlsSettings {
  static constexpr msg::MessageInfo kInfo = msg::kTlsSettingsInfo;
  std::string certificate_pem;
  std::string key_pem;
  static constexpr auto fields() {
    using fields::field;
    constexpr fields::Origin kParent = fields::Origin::parent;
    return std::tuple{
        field(&TlsSettings::certificate_pem, "certificate_pem",
              {.length = kMaxPem, .origin = kParent}),
        field(&TlsSettings::key_pem, "key_pem", {.length = kMaxPem, .origin = kParent}),
    };
  }
  friend bool operator==(const TlsSettings&, const TlsSettings&) = default;
};

// ===== End of configuration ================================================================

}  // namespace postern::smtp
