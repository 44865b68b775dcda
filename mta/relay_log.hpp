// The mta's log events (docs/logging.md, "mta"): a connection carrying a message, TLS with a
// server, a connection closed or lost, a server that could not be reached, a destination held
// back, a destination whose servers could not be found, a site slowed by a server's answers.
// Built here from plain values; every value goes through log::quote (log_line.hpp), so a
// server's reply or a host name from DNS stays one value and cannot add a field or a line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/mail/client_stream.hpp"
#include "common/util/log_line.hpp"
#include "mta/relay.hpp"

namespace postern::mta::events {

// "2026-12-07T04:10:00Z": when a steady-clock duration from now ends, in UTC.
std::string until(Clock::duration from_now);

// The keys every connection event starts with: conn (the mta's number for the connection),
// domain (the destination: a domain, "[literal]" or a route), relay (host[ip]:port), and
// source (the local address) when one is bound.
log::Line& connection(log::Line& line, std::string_view event, uint64_t conn,
                      std::string_view domain, const Target& target);

// A message's transaction starts on a connection: new or reused (it carried mail before).
void connect(std::string_view queue_id, uint64_t conn, std::string_view domain,
             const Target& target, bool reused, std::string_view tls);
// The handshake with a server: facts when it was established; otherwise why it failed and
// what follows (then: "plaintext" when the server is tried again in the clear, "deferred").
void tls(uint64_t conn, std::string_view domain, const Target& target, const mail::TlsFacts* facts,
         std::string_view error, std::string_view then);
// A connection that was ready ended: reason is ours (idle, limit...) when lost is false, the
// failure (a timeout, the server's 421, a dropped connection) when true.
void closed(uint64_t conn, std::string_view domain, const Target& target, bool lost,
            std::string_view reason, uint32_t messages);
// A server could not be reached or refused to talk (before the session was ready). down_for:
// seconds it is left alone now; next: another server of the destination is tried.
void connect_failed(uint64_t conn, std::string_view domain, const Target& target,
                    std::string_view reason, std::optional<int64_t> down_for, bool next);
// What waits for a destination is deferred without a connection until a time (traffic
// shaping, every server down).
void held(std::string_view domain, std::string_view site, std::string_view reason,
          Clock::duration for_how_long, size_t deliveries);
// Where a destination's mail goes could not be found (MX, a route's servers).
void resolve_failed(std::string_view domain, bool permanent, std::string_view dsn,
                    std::string_view reason);

}  // namespace postern::mta::events
