// The pre-greeting checks of one client; see client_checks.hpp. Answers come from dns::Resolver
// (already parsed and sanitised there); this file only counts them against the configuration
// and words the verdict. It never refuses on a DNS failure.
#include "lookup/client_checks.hpp"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>

#include <algorithm>
#include <limits>
#include <string_view>
#include <utility>

#include "common/util/event.hpp"
#include "common/util/inet.hpp"

namespace postern::lookup {
namespace {

using Fcrdns = ClientVerdict::Fcrdns;

const char* fcrdns_name(Fcrdns result) {
  switch (result) {
    case Fcrdns::not_checked:
      return "not checked";
    case Fcrdns::pass:
      return "pass";
    case Fcrdns::fail:
      return "fail";
    case Fcrdns::temporary:
      return "temporary";
  }
  return "unknown";
}

// The zone names come from the validated configuration; this only guarantees that a reply or
// header line can never carry a control character or a space whatever reached it.
void append_printable(std::string& out, std::string_view text) {
  for (const char c : text) out += c > ' ' && c < 0x7f ? c : '?';
}

void append_joined(std::string& out, const std::vector<std::string>& items,
                   std::string_view separator) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    append_printable(out, items[i]);
  }
}

// Codes in numeric order, so that the same listing always reads the same whatever order the
// DNS answer had. Resolver::dnsbl gives only IPv4 literals.
uint32_t code_value(const std::string& code) {
  in_addr parsed{};
  return inet_pton(AF_INET, code.c_str(), &parsed) == 1 ? ntohl(parsed.s_addr) : 0;
}

void add_part(std::string& line, std::string_view part) {
  if (!line.empty()) line += "; ";
  line += part;
}

}  // namespace

struct ClientCheck::State {
  struct ZoneAnswer {
    dns::Status status = dns::Status::temporary;
    std::vector<std::string> codes;
  };

  State(const ClientChecks& checks_in, VerdictCallback done_in)
      : checks(checks_in), done(std::move(done_in)) {}

  // One answer in; the verdict after the last.
  void answered() {
    if (--remaining == 0) finish();
  }

  // Decides, then calls back. Touches nothing of *this after calling: done may destroy the
  // ClientCheck, and with it *this.
  void finish() {
    VerdictCallback callback = std::move(done);
    ClientVerdict verdict = decide();
    callback(std::move(verdict));
  }

  static void on_ready(evutil_socket_t, short, void* arg) { static_cast<State*>(arg)->finish(); }

  ClientVerdict decide();

  const ClientChecks& checks;
  VerdictCallback done;
  std::string client;  // the address as text, for the reply and the log
  bool trusted = false;
  dns::Status fcrdns_status = dns::Status::temporary;
  std::optional<std::string> verified_name;
  std::vector<ZoneAnswer> zones;  // one per checks.zones, when the DNSBL check is on
  size_t remaining = 0;           // answers still to come
  EventPtr ready;                 // only when nothing is asked: the verdict from the loop
};

ClientVerdict ClientCheck::State::decide() {
  ClientVerdict verdict;
  std::string log = "client " + client + ": ";
  verdict.client = client;
  if (trusted) {
    verdict.trusted = true;
    verdict.log = log + "trusted network, not checked";
    return verdict;
  }
  std::string notes;

  if (checks.fcrdns != CheckAction::off) {
    switch (fcrdns_status) {
      case dns::Status::ok:
        verdict.fcrdns = Fcrdns::pass;
        verdict.verified_name = std::move(verified_name);
        break;
      case dns::Status::no_name:  // no PTR
      case dns::Status::no_data:  // PTR names, none mapping back
        verdict.fcrdns = Fcrdns::fail;
        break;
      case dns::Status::temporary:
      case dns::Status::bogus:
        verdict.fcrdns = Fcrdns::temporary;
        break;
    }
    std::string part = std::string("fcrdns=") + fcrdns_name(verdict.fcrdns);
    if (verdict.verified_name) part += " (" + *verdict.verified_name + ")";
    if (verdict.fcrdns == Fcrdns::temporary) {
      part += std::string(" (") + dns::to_string(fcrdns_status) + ", fail-open)";
      verdict.dns_failures.push_back({"fcrdns", "", std::string(dns::to_string(fcrdns_status))});
    }
    add_part(notes, part);
  }

  std::string dnsbl_listing;  // "a.example=127.0.0.2, b.example=127.0.0.3"
  std::vector<std::string> listing_zones;
  if (checks.dnsbl != CheckAction::off && !zones.empty()) {
    std::string ignored;
    std::string failed;
    for (size_t i = 0; i < zones.size(); ++i) {
      const DnsblZone& zone = checks.zones[i];
      ZoneAnswer& answer = zones[i];
      if (answer.status != dns::Status::ok) {
        verdict.failed_zones.push_back(zone.zone);
        verdict.dns_failures.push_back(
            {"dnsbl", zone.zone, std::string(dns::to_string(answer.status))});
        if (!failed.empty()) failed += ", ";
        failed += zone.zone + " (" + dns::to_string(answer.status) + ")";
        continue;
      }
      std::sort(
          answer.codes.begin(), answer.codes.end(),
          [](const std::string& a, const std::string& b) { return code_value(a) < code_value(b); });
      std::string counted;
      std::string other;
      for (const std::string& code : answer.codes) {
        const bool counts = zone.codes.empty() || std::find(zone.codes.begin(), zone.codes.end(),
                                                            code) != zone.codes.end();
        std::string& into = counts ? counted : other;
        if (!into.empty()) into += ',';
        into += code;
      }
      if (!other.empty()) {
        if (!ignored.empty()) ignored += ", ";
        ignored += zone.zone + "=" + other;
      }
      if (counted.empty()) continue;
      verdict.score = verdict.score > std::numeric_limits<uint32_t>::max() - zone.weight
                          ? std::numeric_limits<uint32_t>::max()
                          : verdict.score + zone.weight;
      verdict.listed.push_back(zone.zone + "=" + counted);
      listing_zones.push_back(zone.zone);
    }
    dnsbl_listing =
        "dnsbl=" + std::to_string(verdict.score) + "/" + std::to_string(checks.threshold) + " (";
    append_joined(dnsbl_listing, verdict.listed, ", ");
    dnsbl_listing += ")";
    add_part(notes, verdict.listed.empty() ? "dnsbl=0/" + std::to_string(checks.threshold)
                                           : dnsbl_listing);
    if (!ignored.empty()) add_part(notes, "codes not counted: " + ignored);
    if (!failed.empty()) add_part(notes, "failed, fail-open: " + failed);
  }

  const bool dnsbl_hit = checks.dnsbl != CheckAction::off && !verdict.listed.empty() &&
                         verdict.score >= checks.threshold;
  const bool fcrdns_hit = checks.fcrdns != CheckAction::off && verdict.fcrdns == Fcrdns::fail;

  if (dnsbl_hit && checks.dnsbl == CheckAction::refuse) {
    verdict.refuse = true;
    verdict.reply = "554 5.7.1 Client " + client + " is listed by ";
    append_joined(verdict.reply, listing_zones, ", ");
  } else if (fcrdns_hit && checks.fcrdns == CheckAction::refuse) {
    verdict.refuse = true;
    verdict.reply = "554 5.7.1 Client " + client + " has no forward-confirmed host name";
  }
  if (fcrdns_hit && checks.fcrdns == CheckAction::tag) add_part(verdict.header, "fcrdns=fail");
  if (dnsbl_hit && checks.dnsbl == CheckAction::tag) add_part(verdict.header, dnsbl_listing);

  if (notes.empty()) notes = "no checks configured";
  if (verdict.refuse)
    add_part(notes, "refused");
  else if (!verdict.header.empty())
    add_part(notes, "tagged");
  else
    add_part(notes, "accepted");
  verdict.log = log + notes;
  return verdict;
}

ClientCheck::ClientCheck(event_base* base, dns::Resolver& resolver, const ClientChecks& checks,
                         std::span<const inet::Network> trusted, const sockaddr* client,
                         VerdictCallback done)
    : state_(std::make_shared<State>(checks, std::move(done))) {
  State& state = *state_;
  state.client = inet::address_text(client);
  if (state.client.empty()) state.client = "(unknown address)";
  state.trusted = std::any_of(trusted.begin(), trusted.end(),
                              [client](const inet::Network& n) { return n.contains(client); });
  const bool ask_fcrdns = !state.trusted && checks.fcrdns != CheckAction::off;
  const bool ask_dnsbl = !state.trusted && checks.dnsbl != CheckAction::off;
  if (ask_dnsbl) state.zones.resize(checks.zones.size());
  state.remaining = (ask_fcrdns ? 1 : 0) + state.zones.size();

  if (state.remaining == 0) {
    state.ready.reset(event_new(base, -1, 0, &State::on_ready, &state));
    event_active(state.ready.get(), EV_TIMEOUT, 0);
    return;
  }
  // The resolver calls back later, never inside these calls, so remaining is final before the
  // first answer. A callback whose ClientCheck is gone finds its State expired and drops the
  // answer; while one runs, its lock keeps the State alive even if done destroys *this.
  const std::weak_ptr<State> weak = state_;
  if (ask_fcrdns)
    resolver.fcrdns(client, [weak](dns::Status status, std::optional<std::string> name) {
      const std::shared_ptr<State> alive = weak.lock();
      if (!alive) return;
      alive->fcrdns_status = status;
      alive->verified_name = std::move(name);
      alive->answered();
    });
  for (size_t i = 0; i < state.zones.size(); ++i)
    resolver.dnsbl(checks.zones[i].zone, client,
                   [weak, i](dns::Status status, std::vector<std::string> codes) {
                     const std::shared_ptr<State> alive = weak.lock();
                     if (!alive) return;
                     alive->zones[i] = State::ZoneAnswer{status, std::move(codes)};
                     alive->answered();
                   });
}

ClientCheck::~ClientCheck() = default;

}  // namespace postern::lookup
