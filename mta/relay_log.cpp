// The mta's log events; see relay_log.hpp.
#include "mta/relay_log.hpp"

#include <ctime>

namespace postern::mta::events {

std::string until(Clock::duration from_now) {
  const auto when = std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(from_now);
  const std::time_t t =
      std::chrono::system_clock::to_time_t(std::chrono::ceil<std::chrono::seconds>(when));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

log::Line& connection(log::Line& line, std::string_view event, uint64_t conn,
                      std::string_view domain, const Target& target) {
  line.add("event", event).number("conn", conn).add("domain", domain).add("relay", target.name());
  if (!target.source.empty()) line.add("source", target.source);
  return line;
}

void connect(std::string_view queue_id, uint64_t conn, std::string_view domain,
             const Target& target, bool reused, std::string_view tls) {
  log::Line line(queue_id);
  connection(line, "connect", conn, domain, target)
      .add("reused", reused ? "yes" : "no")
      .add("tls", tls.empty() ? "no" : tls)
      .info();
}

void tls(uint64_t conn, std::string_view domain, const Target& target, const mail::TlsFacts* facts,
         std::string_view error, std::string_view then) {
  log::Line line;
  connection(line, "tls", conn, domain, target)
      .add("policy", mail::policy_name(target.tls))
      .add("result", facts != nullptr ? "ok" : "failed");
  if (facts != nullptr) {
    line.add("tls", facts->description).add("verify", facts->verified ? "ok" : "no");
    if (facts->verified) line.add("verified_name", facts->server_name);
    return line.info();
  }
  line.add("error", error).add("then", then).warn();
}

void closed(uint64_t conn, std::string_view domain, const Target& target, bool lost,
            std::string_view reason, uint32_t messages) {
  log::Line line;
  connection(line, "close", conn, domain, target)
      .add("result", lost ? "lost" : "closed")
      .add("reason", reason)
      .number("messages", messages)
      .info();
}

void connect_failed(uint64_t conn, std::string_view domain, const Target& target,
                    std::string_view reason, std::optional<int64_t> down_for, bool next) {
  log::Line line;
  connection(line, "connect_failed", conn, domain, target).add("reason", reason);
  if (down_for) line.number("down_for", static_cast<uint64_t>(std::max<int64_t>(0, *down_for)));
  line.add("next", next ? "yes" : "no").warn();
}

void held(std::string_view domain, std::string_view site, std::string_view reason,
          Clock::duration for_how_long, size_t deliveries) {
  log::Line line;
  line.add("event", "held").add("domain", domain);
  if (!site.empty() && site != domain) line.add("site", site);
  line.add("reason", reason)
      .add("until", until(for_how_long))
      .number("deliveries", deliveries)
      .warn();
}

void resolve_failed(std::string_view domain, bool permanent, std::string_view dsn,
                    std::string_view reason) {
  log::Line()
      .add("event", "resolve_failed")
      .add("domain", domain)
      .add("result", permanent ? "permanent" : "temporary")
      .add("dsn", dsn)
      .add("reason", reason)
      .warn();
}

}  // namespace postern::mta::events
