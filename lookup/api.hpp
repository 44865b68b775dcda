// smtpd-lookup's interface: what the other processes send it.
#pragma once

// --- messages lookup receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"

namespace postern::msg {

// Is this recipient acceptable here? Asked at RCPT time so bad mail is refused in the session.
// The local part as smtp decoded it: four times RFC 5321's octets leaves room for UTF-8.
constexpr size_t kMaxLocalPartText = address::kMaxLocalPart * 4;
struct RcptCheck {
  static constexpr MessageInfo kInfo = schema(Type::rcpt_check);
  std::string local_part;
  std::string domain;          // normalised (address::normalize_domain); empty for <postmaster>
  bool literal = false;        // the domain is an address literal
  bool authenticated = false;  // smtp's word; lookup decides from what it verified itself
  uint64_t session = 0;        // smtp's session id (SessionOpen)
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RcptCheck::local_part, "local_part", {.length = kMaxLocalPartText}),
        fields::field(&RcptCheck::domain, "domain", {.length = kMaxDomainLength}),
        fields::field(&RcptCheck::literal, "literal"),
        fields::field(&RcptCheck::authenticated, "authenticated"),
        fields::field(&RcptCheck::session, "session"),
    };
  }
};

// A new SMTP session, with its accepted connection as the descriptor: lookup reads the
// client's and the local address from the socket itself and closes it. What lookup learns
// here and the identity it verifies in AUTH are what the relay check trusts, not smtp.
struct SessionOpen {
  static constexpr MessageInfo kInfo = schema(Type::session_open);
  uint64_t session = 0;  // smtp's session id, never 0
  std::string listener;  // the listener's name, as smtp says it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SessionOpen::session, "session", {.min = 1}),
        fields::field(&SessionOpen::listener, "listener", {.length = kMaxNameLength}),
    };
  }
};

struct SessionClose {
  static constexpr MessageInfo kInfo = schema(Type::session_close);
  uint64_t session = 0;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SessionClose::session, "session"),
    };
  }
};

// Before the queue commits a message with a recipient outside the local domains: may this
// session relay? The rest is what smtp wrote in the envelope, checked against lookup's own.
struct RelayCheck {
  static constexpr MessageInfo kInfo = schema(Type::relay_check);
  uint64_t session = 0;
  std::string client_address;
  std::string listener;
  std::string auth_user;
  std::string domain;  // the first recipient domain that is not local, for the log
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RelayCheck::session, "session"),
        fields::field(&RelayCheck::client_address, "client_address", {.length = kMaxField}),
        fields::field(&RelayCheck::listener, "listener", {.length = kMaxField}),
        fields::field(&RelayCheck::auth_user, "auth_user", {.length = kMaxField}),
        fields::field(&RelayCheck::domain, "domain", {.length = kMaxField}),
    };
  }
};

// Before the greeting: is this client welcome, and what is its verified name?
struct ClientCheck {
  static constexpr MessageInfo kInfo = schema(Type::client_check);
  std::string listener;  // the listener's name, whose checks apply
  std::string address;   // the client's IP address, as inet::address_text writes it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ClientCheck::listener, "listener", {.length = kMaxNameLength}),
        fields::field(&ClientCheck::address, "address", {.length = kMaxAddressText}),
    };
  }
};

struct MxQuery {
  static constexpr MessageInfo kInfo = schema(Type::mx_query);
  std::string domain;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MxQuery::domain, "domain", {.length = kMaxDomainLength}),
    };
  }
};

// An open descriptor of the credentials table, opened by the parent (the file is root's);
// name is the path, for error messages.
// A table file the parent opened (as root) for lookup to read: at start and on every reload.
enum class TableKind : uint8_t { credentials, aliases, users };
constexpr uint32_t kTableKindCount = 3;
struct TableFile {
  static constexpr MessageInfo kInfo = schema(Type::table_file);
  TableKind kind = TableKind::credentials;
  std::string name;  // its path, as the config names it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&TableFile::kind, "kind", {.values = kTableKindCount}),
        fields::field(&TableFile::name, "name", {.length = kMaxPathLength}),
    };
  }
};

// RFC 4954: authzid is not supported, so only who and what.
constexpr size_t kMaxAuthText = 1024;  // user name, password
struct AuthCheck {
  static constexpr MessageInfo kInfo = schema(Type::auth_check);
  std::string user;
  std::string password;
  std::string client_address;  // for the failure throttle
  uint64_t session = 0;        // lookup remembers who this session authenticated as
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&AuthCheck::user, "user", {.length = kMaxAuthText}),
        fields::field(&AuthCheck::password, "password", {.length = kMaxAuthText}),
        fields::field(&AuthCheck::client_address, "client_address", {.length = kMaxAddressText}),
        fields::field(&AuthCheck::session, "session"),
    };
  }
};

struct ResolveLocal {
  // The parent asks too: it confirms a delivery helper's destination (smtpd/helpers.cpp).
  static constexpr MessageInfo kInfo = schema(Type::resolve_local);
  std::vector<std::string> addresses;
  bool valid() const {
    return std::none_of(addresses.begin(), addresses.end(),
                        [](const auto& a) { return a.empty(); });
  }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ResolveLocal::addresses, "addresses",
                      {.length = kMaxField, .count = kResolveBatch}),
    };
  }
};

}  // namespace postern::msg
