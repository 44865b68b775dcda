// A message's envelope: who sent it, to whom, and how it arrived. Built by smtp during the
// transaction, stored by the queue next to the message, read by mda and mta when delivering.
// Addresses are kept in canonical text (address::to_string); DSN parameters as parsed
// (RFC 3461).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern {

// RFC 3461 NOTIFY: nothing set means the client gave no NOTIFY (the default applies).
struct DsnNotify {
  bool never = false;
  bool success = false;
  bool failure = false;
  bool delay = false;
  friend bool operator==(const DsnNotify&, const DsnNotify&) = default;
};

// RFC 3461 RET.
enum class DsnRet : uint8_t { unspecified, full, headers };

enum class RecipientState : uint8_t { pending, delivered, failed };

struct Recipient {
  std::string address;     // canonical mailbox
  std::string orcpt_type;  // ORCPT addr-type ("rfc822"), empty when not given
  std::string orcpt;       // ORCPT address, decoded from xtext
  DsnNotify notify;
  RecipientState state = RecipientState::pending;
  // The queue's record of its deliveries: how many were tried, and why the last one that
  // failed temporarily did (a status code and the detail), empty when none did.
  uint32_t attempts = 0;
  std::string last_error;
  friend bool operator==(const Recipient&, const Recipient&) = default;
};

struct Envelope {
  std::string id;              // queue id: 16 lower-case hex digits, random
  int64_t arrival = 0;         // unix seconds
  std::string sender;          // canonical mailbox; empty for the null sender <>
  std::string helo;            // as the client said it
  std::string client_address;  // "192.0.2.1" / "2001:db8::1"
  std::string client_name;     // forward-confirmed rDNS name, empty when none
  std::string listener;        // name of the listener it arrived on
  std::string auth_user;       // empty when not authenticated
  std::string tls;             // "TLSv1.3 TLS_AES_256_GCM_SHA384", empty without TLS
  bool smtputf8 = false;       // SMTPUTF8 given at MAIL
  bool body_8bit = false;      // BODY=8BITMIME given at MAIL
  DsnRet ret = DsnRet::unspecified;
  std::string envid;            // DSN ENVID, decoded from xtext
  uint64_t size = 0;            // message bytes in the spool (with our Received: header)
  int64_t next_try = 0;         // unix seconds of the next delivery attempt; 0: as soon as possible
  bool delay_reported = false;  // the sender was told that delivery is late (NOTIFY=DELAY)
  std::vector<Recipient> recipients;
  friend bool operator==(const Envelope&, const Envelope&) = default;
};

// The most recipients a message may have; a 10,000-user fanout fits with room. The spool's
// envelope file refuses more (queue/envelope_file.hpp), and mta gathers no more into a job.
constexpr size_t kMaxRecipients = 100000;

// A queue id: 16 lower-case hex digits (64 random bits: unique and not guessable).
constexpr size_t kQueueIdLength = 16;
constexpr bool valid_queue_id(std::string_view id) {
  if (id.size() != kQueueIdLength) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace postern
