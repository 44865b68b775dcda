// DNS questions on libunbound's event mode; see dns.hpp. Answers come from the network through
// libunbound and are read only with ldns (parse_answer). Nothing of ours runs inside a
// libunbound callback but parsing and queueing: the rest runs from our own event.
#include "lookup/dns.hpp"

#include <arpa/inet.h>
#include <event2/event.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <unbound-event.h>
#include <unbound.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/util/event.hpp"
#include "common/util/inet.hpp"

namespace postern::lookup::dns {
namespace {

// A longer chain is a loop or an attack; libunbound itself stops at 11 (max-query-restarts).
constexpr int kMaxCnameChain = 8;
// PTR names checked by fcrdns: a client can publish hundreds, each costing a question.
constexpr size_t kMaxFcrdnsNames = 5;
// MX hosts whose addresses are looked up: each costs two questions, and no MTA tries more.
constexpr size_t kMaxMxHosts = 10;
constexpr uint16_t kClassIn = 1;

// A dead forwarder costs libunbound 17 s per question with its defaults (RTT backoff up to
// 120 s, five retries); with these it gives up in 0.8 s (measured with 1.17). Our timer is the
// real limit. unblock-lan-zones: let the forwarder answer PTR for RFC 1918 clients instead of
// libunbound's empty AS112 zones.
constexpr const char* kUnboundOptions[][2] = {
    {"infra-cache-max-rtt:", "500"},
    {"outbound-msg-retry:", "1"},
    {"unblock-lan-zones:", "yes"},
};

// libunbound answers these itself (RFC 6761/6303/8375) whatever the forwarder holds; the
// forwarder is the authority here, so a site's own PTR for 127.x or names under test. work.
// (The "local-zone: x nodefault" option is silently ignored by libunbound.) onion. and
// invalid. stay blocked: no DNS server has anything to say about them.
constexpr const char* kBuiltInZonesToRemove[] = {
    "localhost.",
    "127.in-addr.arpa.",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "test.",
    "home.arpa.",
};

struct UbCtxDeleter {
  void operator()(ub_ctx* ctx) const { ub_ctx_delete(ctx); }
};
using UbCtxPtr = std::unique_ptr<ub_ctx, UbCtxDeleter>;

struct PktDeleter {
  void operator()(ldns_pkt* pkt) const { ldns_pkt_free(pkt); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktDeleter>;

struct MallocDeleter {
  void operator()(char* text) const { free(text); }
};

Answer failed(Status status, std::string error) {
  Answer answer;
  answer.status = status;
  answer.error = std::move(error);
  return answer;
}

// Presentation format from ldns (escapes for odd bytes), lower-case, without the final dot.
std::string name_text(const ldns_rdf* name) {
  const std::unique_ptr<char, MallocDeleter> text(ldns_rdf2str(name));
  if (!text) return {};
  std::string out(text.get());
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Written as the record holds it: an AAAA record of ::ffff:a.b.c.d stays IPv6.
std::string address_of(const ldns_rdf* rdf, int family) {
  const size_t size = family == AF_INET ? 4 : 16;
  if (ldns_rdf_size(rdf) != size) return {};
  sockaddr_storage address{};
  address.ss_family = static_cast<sa_family_t>(family);
  auto* raw = reinterpret_cast<uint8_t*>(&address);
  std::copy_n(ldns_rdf_data(rdf), size,
              raw + (family == AF_INET ? offsetof(sockaddr_in, sin_addr)
                                       : offsetof(sockaddr_in6, sin6_addr)));
  return inet::address_text(reinterpret_cast<const sockaddr*>(&address), inet::Mapped::as_ipv6);
}

// The record's data as Record, or nothing if it is malformed for its type.
std::optional<Record> record_of(const ldns_rr* rr, RecordType type) {
  Record record;
  switch (type) {
    case RecordType::a:
    case RecordType::aaaa: {
      if (ldns_rr_rd_count(rr) != 1) return std::nullopt;
      record.value = address_of(ldns_rr_rdf(rr, 0), type == RecordType::a ? AF_INET : AF_INET6);
      if (record.value.empty()) return std::nullopt;
      return record;
    }
    case RecordType::ptr: {
      if (ldns_rr_rd_count(rr) != 1 || ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) != LDNS_RDF_TYPE_DNAME)
        return std::nullopt;
      record.value = name_text(ldns_rr_rdf(rr, 0));
      if (record.value.empty()) return std::nullopt;  // a PTR to the root names nothing
      return record;
    }
    case RecordType::mx: {
      if (ldns_rr_rd_count(rr) != 2) return std::nullopt;
      const ldns_rdf* preference = ldns_rr_rdf(rr, 0);
      const ldns_rdf* exchange = ldns_rr_rdf(rr, 1);
      if (ldns_rdf_get_type(preference) != LDNS_RDF_TYPE_INT16 || ldns_rdf_size(preference) != 2 ||
          ldns_rdf_get_type(exchange) != LDNS_RDF_TYPE_DNAME)
        return std::nullopt;
      record.preference = ldns_rdf2native_int16(preference);
      record.value = name_text(exchange);
      return record;
    }
  }
  return std::nullopt;
}

bool is_loopback_code(const std::string& address) {
  in_addr parsed{};
  return inet_pton(AF_INET, address.c_str(), &parsed) == 1 && (ntohl(parsed.s_addr) >> 24) == 127;
}

// The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d), if it is one.
std::optional<in_addr> mapped_ipv4(const sockaddr_in6& address) {
  if (!IN6_IS_ADDR_V4MAPPED(&address.sin6_addr)) return std::nullopt;
  in_addr out{};
  std::copy_n(address.sin6_addr.s6_addr + 12, 4, reinterpret_cast<uint8_t*>(&out));
  return out;
}

std::string reverse_ipv4(const in_addr& address) {
  const auto* octets = reinterpret_cast<const uint8_t*>(&address);
  std::string out;
  for (int i = 3; i >= 0; --i) {
    out += std::to_string(octets[i]);
    if (i > 0) out += '.';
  }
  return out;
}

// The status of an empty result built from two answers: a failure that may hide data wins
// over a permanent "nothing".
Status combine_empty(Status a, Status b) {
  if (a == Status::temporary || b == Status::temporary) return Status::temporary;
  if (a == Status::bogus || b == Status::bogus) return Status::bogus;
  if (a == Status::no_name && b == Status::no_name) return Status::no_name;
  return Status::no_data;
}

bool is_failure(Status status) {
  return status == Status::temporary || status == Status::bogus;
}

// A name libunbound can be asked about; what it cannot parse is refused by ub_resolve_event.
bool plausible_name(const std::string& name) {
  return !name.empty() && name.size() <= 255 && name.find('\0') == std::string::npos;
}

std::string normalized_domain(std::string name) {
  if (name.size() > 1 && name.back() == '.') name.pop_back();
  for (char& c : name)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return name;
}

}  // namespace

const char* to_string(Status status) {
  switch (status) {
    case Status::ok:
      return "ok";
    case Status::no_name:
      return "no such domain";
    case Status::no_data:
      return "no record of that type";
    case Status::temporary:
      return "temporary failure";
    case Status::bogus:
      return "DNSSEC validation failed";
  }
  return "unknown";
}

Answer parse_answer(std::span<const uint8_t> packet, RecordType type) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, packet.data(), packet.size()) != LDNS_STATUS_OK || !raw)
    return failed(Status::temporary, "malformed DNS answer");
  const PktPtr pkt(raw);

  const ldns_pkt_rcode rcode = ldns_pkt_get_rcode(pkt.get());
  if (rcode == LDNS_RCODE_NXDOMAIN) return failed(Status::no_name, "no such domain");
  if (rcode != LDNS_RCODE_NOERROR) {
    const ldns_lookup_table* known = ldns_lookup_by_id(ldns_rcodes, static_cast<int>(rcode));
    return failed(Status::temporary, std::string("DNS server answered ") +
                                         (known ? known->name : std::to_string(rcode).c_str()));
  }
  const ldns_rr_list* question = ldns_pkt_question(pkt.get());
  if (ldns_rr_list_rr_count(question) != 1)
    return failed(Status::temporary, "DNS answer without exactly one question");
  const ldns_rr* asked = ldns_rr_list_rr(question, 0);
  if (ldns_rr_get_type(asked) != static_cast<ldns_rr_type>(type) ||
      ldns_rr_get_class(asked) != LDNS_RR_CLASS_IN)
    return failed(Status::temporary, "DNS answer to another question");

  // RFC 1034 3.6.2: the answer may hold a CNAME chain from the question's name to the name
  // owning the records, in any order. ldns_dname_compare ignores case.
  const ldns_rr_list* section = ldns_pkt_answer(pkt.get());
  const size_t count = ldns_rr_list_rr_count(section);
  const ldns_rdf* owner = ldns_rr_owner(asked);
  for (int links = 0;; ++links) {
    const ldns_rdf* target = nullptr;
    for (size_t i = 0; i < count && !target; ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(section, i);
      if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN &&
          ldns_rr_rd_count(rr) == 1 && ldns_dname_compare(ldns_rr_owner(rr), owner) == 0 &&
          ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) == LDNS_RDF_TYPE_DNAME)
        target = ldns_rr_rdf(rr, 0);
    }
    if (!target) break;
    if (links == kMaxCnameChain) return failed(Status::temporary, "CNAME chain too long");
    owner = target;
  }

  Answer answer;
  answer.canonical_name = name_text(owner);
  for (size_t i = 0; i < count; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(section, i);
    if (ldns_rr_get_type(rr) != static_cast<ldns_rr_type>(type) ||
        ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
        ldns_dname_compare(ldns_rr_owner(rr), owner) != 0)
      continue;
    if (auto record = record_of(rr, type)) answer.records.push_back(std::move(*record));
  }
  if (answer.records.empty()) {
    answer.status = Status::no_data;
    answer.error = "no record of that type";
  } else {
    answer.status = Status::ok;
  }
  return answer;
}

std::string reverse_name(const sockaddr* address) {
  if (!address) return {};
  if (address->sa_family == AF_INET)
    return reverse_ipv4(reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
  if (address->sa_family != AF_INET6) return {};
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
  if (const auto v4 = mapped_ipv4(*in6)) return reverse_ipv4(*v4);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(63);
  for (int i = 15; i >= 0; --i) {
    const uint8_t byte = in6->sin6_addr.s6_addr[i];
    out += kHex[byte & 0xf];
    out += '.';
    out += kHex[byte >> 4];
    if (i > 0) out += '.';
  }
  return out;
}

std::string ptr_name(const sockaddr* address) {
  std::string reversed = reverse_name(address);
  if (reversed.empty()) return {};
  const bool ipv4 = reversed.size() < 63;  // 32 nibbles and 31 dots otherwise
  return reversed + (ipv4 ? ".in-addr.arpa" : ".ip6.arpa");
}

struct Resolver::Impl {
  using Then = std::function<void(Answer)>;

  // One question outstanding; owned by questions until answered or timed out.
  struct Question {
    Impl* impl = nullptr;
    uint64_t id = 0;
    RecordType type = RecordType::a;
    int async_id = 0;  // libunbound's, for ub_cancel
    std::chrono::steady_clock::time_point asked;
    Then then;
    EventPtr timer;
  };
  // What libunbound holds as its callback argument. It lives until libunbound is done with
  // it (it called back, or ub_cancel promised it never will) and names the question only by
  // id: a question that timed out meanwhile is simply not found.
  struct Ticket {
    Impl* impl = nullptr;
    uint64_t id = 0;
  };

  Impl(event_base* base_in, const ResolverOptions& options_in, UbCtxPtr ctx_in)
      : base(base_in),
        options(options_in),
        ctx(std::move(ctx_in)),
        drain_event(event_new(base_in, -1, 0, &Impl::on_drain, this)),
        rng(std::random_device{}()) {
    const timeval timeout = to_timeval(std::chrono::milliseconds(options.timeout_ms));
    // All questions share one duration: libevent keeps such timers in a queue, not the heap.
    const timeval* common = event_base_init_common_timeout(base, &timeout);
    question_timeout = common ? *common : timeout;
  }

  ~Impl() {
    closing = true;
    for (const auto& [id, question] : questions)
      if (question->async_id != 0 && ub_cancel(ctx.get(), question->async_id) == 0)
        tickets.erase(id);
    // Deleting the context frees libunbound's events on base; a query it still runs calls
    // back with SERVFAIL unless cancelled, and on_answer ignores that while closing.
    ctx.reset();
  }

  void post(std::function<void()> work) {
    posted.push_back(std::move(work));
    if (!drain_scheduled) {
      drain_scheduled = true;
      event_active(drain_event.get(), EV_TIMEOUT, 0);
    }
  }

  static void on_drain(evutil_socket_t, short, void* arg) {
    auto* impl = static_cast<Impl*>(arg);
    impl->drain_scheduled = false;
    std::deque<std::function<void()>> batch;
    batch.swap(impl->posted);
    // A callback may destroy the Resolver; what is left of the batch then dies with it here.
    const std::weak_ptr<const bool> alive = impl->alive;
    for (auto& work : batch) {
      work();
      if (alive.expired()) return;
    }
  }

  // Asks one question; then runs later from our own event, exactly once unless *this dies.
  void ask(const std::string& name, RecordType type, Then then) {
    if (!plausible_name(name)) {
      post([then = std::move(then)] { then(failed(Status::no_name, "invalid domain name")); });
      return;
    }
    if (questions.size() >= options.max_in_flight) {
      ++counters.failures;
      post([then = std::move(then)] {
        then(failed(Status::temporary, "too many DNS queries in flight"));
      });
      return;
    }
    const uint64_t id = next_id++;
    auto question = std::make_unique<Question>();
    question->impl = this;
    question->id = id;
    question->type = type;
    question->then = std::move(then);
    question->asked = std::chrono::steady_clock::now();
    question->timer.reset(evtimer_new(base, &Impl::on_timeout, question.get()));
    evtimer_add(question->timer.get(), &question_timeout);
    auto ticket = std::make_unique<Ticket>(Ticket{this, id});
    Ticket* const ticket_arg = ticket.get();
    tickets.emplace(id, std::move(ticket));
    questions.emplace(id, std::move(question));
    ++counters.queries;

    // Answers from cache or local data call on_answer before ub_resolve_event returns.
    int async_id = 0;
    resolving = true;
    const int error = ub_resolve_event(ctx.get(), name.c_str(), static_cast<int>(type), kClassIn,
                                       ticket_arg, &Impl::on_answer, &async_id);
    resolving = false;
    const auto found = questions.find(id);
    if (error != 0) {
      // Refused before any callback: libunbound keeps nothing of ours.
      tickets.erase(id);
      if (found == questions.end()) return;
      Then failed_then = std::move(found->second->then);
      questions.erase(found);
      const Status status = error == UB_SYNTAX ? Status::no_name : Status::temporary;
      if (is_failure(status)) ++counters.failures;
      std::string why = error == UB_SYNTAX ? "invalid domain name" : ub_strerror(error);
      post([then = std::move(failed_then), status, why = std::move(why)] {
        then(failed(status, why));
      });
      return;
    }
    if (found != questions.end()) found->second->async_id = async_id;
  }

  static void on_answer(void* arg, int rcode, void* packet, int length, int security,
                        char* why_bogus, int /*was_ratelimited*/) {
    auto* ticket = static_cast<Ticket*>(arg);
    Impl* const impl = ticket->impl;
    const uint64_t id = ticket->id;
    impl->tickets.erase(id);  // libunbound is done with it
    if (impl->closing) return;
    const auto found = impl->questions.find(id);
    if (found == impl->questions.end()) return;  // timed out: the caller has had its answer
    const std::unique_ptr<Question> question = std::move(found->second);
    impl->questions.erase(found);
    ++impl->counters.answers;
    if (impl->resolving) ++impl->counters.cached;
    const auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                              std::chrono::steady_clock::now() - question->asked)
                                              .count());
    impl->counters.answer_total_us += us;
    impl->counters.answer_max_us = std::max(impl->counters.answer_max_us, us);

    Answer answer;
    if (security == 1) {
      answer = failed(Status::bogus, std::string("DNSSEC validation failed: ") +
                                         (why_bogus ? why_bogus : "no reason given"));
    } else if (rcode == LDNS_RCODE_NXDOMAIN) {
      answer = failed(Status::no_name, "no such domain");
    } else if (rcode != 0 || !packet || length <= 0) {
      answer =
          failed(Status::temporary, "DNS server failure (rcode " + std::to_string(rcode) + ")");
    } else {
      // The packet is libunbound's buffer, valid only during this call.
      answer = parse_answer(std::span<const uint8_t>(static_cast<const uint8_t*>(packet),
                                                     static_cast<size_t>(length)),
                            question->type);
      answer.secure = security == 2;
    }
    if (is_failure(answer.status)) ++impl->counters.failures;
    impl->post([then = std::move(question->then), answer = std::move(answer)]() mutable {
      then(std::move(answer));
    });
  }

  static void on_timeout(evutil_socket_t, short, void* arg) {
    auto* question = static_cast<Question*>(arg);
    Impl* const impl = question->impl;
    const auto found = impl->questions.find(question->id);
    if (found == impl->questions.end()) return;
    // Freed when this returns: a non-persistent event may be freed from its own callback.
    const std::unique_ptr<Question> owned = std::move(found->second);
    impl->questions.erase(found);
    ++impl->counters.timeouts;
    // libunbound goes on with the query (the answer may still fill its cache) but will not
    // call back; if it cannot promise that, the ticket stays until it does.
    if (owned->async_id != 0 && ub_cancel(impl->ctx.get(), owned->async_id) == 0)
      impl->tickets.erase(owned->id);
    impl->post([then = std::move(owned->then), ms = impl->options.timeout_ms] {
      then(failed(Status::temporary, "DNS timeout after " + std::to_string(ms) + " ms"));
    });
  }

  // A and AAAA in parallel, merged; then gets status, addresses and an error for the log.
  void resolve_addresses(const std::string& name,
                         std::function<void(Status, std::vector<std::string>, std::string)> then) {
    struct Pending {
      Answer v6, v4;
      int remaining = 2;
      std::function<void(Status, std::vector<std::string>, std::string)> then;
    };
    auto pending = std::make_shared<Pending>();
    pending->then = std::move(then);
    auto finish = [](Pending& state) {
      std::vector<std::string> merged;
      const size_t most = std::max(state.v6.records.size(), state.v4.records.size());
      for (size_t i = 0; i < most; ++i) {
        if (i < state.v6.records.size()) merged.push_back(std::move(state.v6.records[i].value));
        if (i < state.v4.records.size()) merged.push_back(std::move(state.v4.records[i].value));
      }
      if (!merged.empty()) {
        state.then(Status::ok, std::move(merged), {});
        return;
      }
      const Status status = combine_empty(state.v6.status, state.v4.status);
      std::string error = state.v6.status == state.v4.status
                              ? state.v4.error
                              : "AAAA: " + state.v6.error + "; A: " + state.v4.error;
      state.then(status, {}, std::move(error));
    };
    ask(name, RecordType::aaaa, [pending, finish](Answer answer) {
      pending->v6 = std::move(answer);
      if (--pending->remaining == 0) finish(*pending);
    });
    ask(name, RecordType::a, [pending, finish](Answer answer) {
      pending->v4 = std::move(answer);
      if (--pending->remaining == 0) finish(*pending);
    });
  }

  void resolve_mx_hosts(std::vector<Record> records, MxCallback done);

  event_base* const base;
  const ResolverOptions options;
  UbCtxPtr ctx;
  timeval question_timeout{};
  std::unordered_map<uint64_t, std::unique_ptr<Question>> questions;
  std::unordered_map<uint64_t, std::unique_ptr<Ticket>> tickets;
  uint64_t next_id = 1;
  bool closing = false;
  bool resolving = false;  // inside ub_resolve_event: an answer now comes from the cache
  std::deque<std::function<void()>> posted;
  EventPtr drain_event;
  bool drain_scheduled = false;
  const std::shared_ptr<const bool> alive = std::make_shared<const bool>(true);
  std::mt19937_64 rng;  // shuffles MX hosts of equal preference; not a secret
  Stats counters;
};

// RFC 5321 5.1: by preference, equal preferences in random order to spread the load; then the
// addresses of every host, in parallel.
void Resolver::Impl::resolve_mx_hosts(std::vector<Record> records, MxCallback done) {
  std::string notes;
  auto note = [&notes](const std::string& text) {
    if (!notes.empty()) notes += "; ";
    notes += text;
  };
  std::stable_sort(records.begin(), records.end(),
                   [](const Record& a, const Record& b) { return a.preference < b.preference; });
  for (auto run = records.begin(); run != records.end();) {
    const auto end = std::find_if(run, records.end(),
                                  [&](const Record& r) { return r.preference != run->preference; });
    std::shuffle(run, end, rng);
    run = end;
  }
  std::vector<MxHost> hosts;
  std::unordered_set<std::string> seen;
  for (Record& record : records) {
    if (record.value.empty()) {
      // RFC 7505 3: "." among other MX records is an error in the zone; only it is skipped.
      note("MX target \".\" among other MX records ignored");
      continue;
    }
    if (!seen.insert(record.value).second) continue;  // the lowest preference was kept
    if (hosts.size() == kMaxMxHosts) {
      note("more than " + std::to_string(kMaxMxHosts) + " MX hosts; the rest ignored");
      break;
    }
    hosts.push_back(MxHost{record.preference, std::move(record.value), {}});
  }
  if (hosts.empty()) {
    MxRoute route;
    route.status = Status::no_data;
    route.error = notes;
    done(std::move(route));
    return;
  }

  struct Pending {
    std::vector<MxHost> hosts;
    std::vector<Status> statuses;
    std::vector<std::string> errors;
    size_t remaining = 0;
    std::string notes;
    MxCallback done;
  };
  auto pending = std::make_shared<Pending>();
  pending->statuses.assign(hosts.size(), Status::temporary);
  pending->errors.resize(hosts.size());
  pending->remaining = hosts.size();
  pending->notes = std::move(notes);
  pending->done = std::move(done);
  pending->hosts = std::move(hosts);
  auto finish = [](Pending& state) {
    MxRoute route;
    route.error = std::move(state.notes);
    bool failure = false;
    for (size_t i = 0; i < state.hosts.size(); ++i) {
      if (!state.hosts[i].addresses.empty()) {
        route.hosts.push_back(std::move(state.hosts[i]));
        continue;
      }
      failure = failure || is_failure(state.statuses[i]);
      if (!route.error.empty()) route.error += "; ";
      route.error += "MX host " + state.hosts[i].name + ": " + state.errors[i];
    }
    route.status =
        !route.hosts.empty() ? Status::ok : (failure ? Status::temporary : Status::no_data);
    state.done(std::move(route));
  };
  for (size_t i = 0; i < pending->hosts.size(); ++i) {
    resolve_addresses(
        pending->hosts[i].name,
        [pending, finish, i](Status status, std::vector<std::string> addresses, std::string error) {
          pending->statuses[i] = status;
          pending->hosts[i].addresses = std::move(addresses);
          pending->errors[i] = error.empty() ? to_string(status) : std::move(error);
          if (--pending->remaining == 0) finish(*pending);
        });
  }
}

Result<std::unique_ptr<Resolver>> Resolver::create(event_base* base,
                                                   const ResolverOptions& options) {
  if (!base) return make_error("no event base");
  if (options.timeout_ms == 0) return make_error("DNS timeout must be at least 1 ms");
  if (options.max_in_flight == 0) return make_error("DNS in-flight limit must be at least 1");
  UbCtxPtr ctx(ub_ctx_create_event(base));
  if (!ctx) return make_error("cannot create a libunbound context");
  for (const auto& [name, value] : kUnboundOptions) {
    const int error = ub_ctx_set_option(ctx.get(), name, value);
    if (error != 0)
      return make_error(std::string("libunbound option ") + name + " " + value + ": " +
                        ub_strerror(error));
  }
  for (const std::string& forwarder : options.forwarders) {
    const int error = forwarder.find('\0') != std::string::npos
                          ? UB_SYNTAX
                          : ub_ctx_set_fwd(ctx.get(), forwarder.c_str());
    if (error != 0) return make_error("DNS forwarder '" + forwarder + "': " + ub_strerror(error));
  }
  if (options.forwarders.empty()) {
    const int error = ub_ctx_resolvconf(ctx.get(), nullptr);
    if (error != 0) return make_error(std::string("/etc/resolv.conf: ") + ub_strerror(error));
  }
  // Removing a zone finalizes the context: no option can be set after this.
  for (const char* zone : kBuiltInZonesToRemove) {
    const int error = ub_ctx_zone_remove(ctx.get(), zone);
    if (error != 0)
      return make_error(std::string("libunbound local zone ") + zone + ": " + ub_strerror(error));
  }
  return std::unique_ptr<Resolver>(
      new Resolver(std::make_unique<Impl>(base, options, std::move(ctx))));
}

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Resolver::~Resolver() = default;

size_t Resolver::in_flight() const {
  return impl_->questions.size();
}

Resolver::Stats Resolver::stats() const {
  return impl_->counters;
}

void Resolver::addresses(const std::string& name, AddressesCallback done) {
  impl_->resolve_addresses(
      normalized_domain(name),
      [done = std::move(done)](Status status, std::vector<std::string> addresses, std::string) {
        done(status, std::move(addresses));
      });
}

void Resolver::ptr(const sockaddr* address, NamesCallback done) {
  const std::string name = ptr_name(address);
  if (name.empty()) {
    impl_->post([done = std::move(done)] { done(Status::no_name, {}); });
    return;
  }
  impl_->ask(name, RecordType::ptr, [done = std::move(done)](Answer answer) {
    std::vector<std::string> names;
    for (Record& record : answer.records) names.push_back(std::move(record.value));
    done(answer.status, std::move(names));
  });
}

void Resolver::fcrdns(const sockaddr* address, VerifiedCallback done) {
  const std::string client = inet::address_text(address);
  const std::string name = ptr_name(address);
  if (client.empty() || name.empty()) {
    impl_->post([done = std::move(done)] { done(Status::no_name, std::nullopt); });
    return;
  }
  const RecordType forward =
      client.find(':') == std::string::npos ? RecordType::a : RecordType::aaaa;
  Impl* const impl = impl_.get();
  impl->ask(name, RecordType::ptr,
            [impl, client, forward, done = std::move(done)](Answer answer) mutable {
              if (answer.status != Status::ok) {
                const Status status = answer.status == Status::no_data
                                          ? Status::no_name
                                          : answer.status;  // no PTR either way
                done(status, std::nullopt);
                return;
              }
              struct Pending {
                std::vector<std::string> names;
                std::vector<Answer> answers;
                size_t remaining = 0;
                std::string client;
                VerifiedCallback done;
              };
              auto pending = std::make_shared<Pending>();
              for (Record& record : answer.records) {
                if (pending->names.size() == kMaxFcrdnsNames) break;
                pending->names.push_back(std::move(record.value));
              }
              pending->answers.resize(pending->names.size());
              pending->remaining = pending->names.size();
              pending->client = client;
              pending->done = std::move(done);
              for (size_t i = 0; i < pending->names.size(); ++i) {
                impl->ask(pending->names[i], forward, [pending, i](Answer forward_answer) {
                  pending->answers[i] = std::move(forward_answer);
                  if (--pending->remaining > 0) return;
                  bool failure = false;
                  for (size_t n = 0; n < pending->names.size(); ++n) {
                    const Answer& candidate = pending->answers[n];
                    failure = failure || is_failure(candidate.status);
                    for (const Record& record : candidate.records)
                      if (record.value == pending->client) {
                        pending->done(Status::ok, pending->names[n]);
                        return;
                      }
                  }
                  pending->done(failure ? Status::temporary : Status::no_data, std::nullopt);
                });
              }
            });
}

void Resolver::dnsbl(const std::string& zone, const sockaddr* address, CodesCallback done) {
  const std::string reversed = reverse_name(address);
  const std::string list = normalized_domain(zone);
  if (reversed.empty() || list.empty() || list == ".") {
    impl_->post([done = std::move(done)] { done(Status::no_name, {}); });
    return;
  }
  impl_->ask(reversed + "." + list, RecordType::a, [done = std::move(done)](Answer answer) {
    std::vector<std::string> codes;
    for (Record& record : answer.records)
      if (is_loopback_code(record.value)) codes.push_back(std::move(record.value));
    const bool listed_or_not = answer.status == Status::ok || answer.status == Status::no_name ||
                               answer.status == Status::no_data;
    done(listed_or_not ? Status::ok : answer.status, std::move(codes));
  });
}

void Resolver::mx(const std::string& domain, MxCallback done) {
  const std::string name = normalized_domain(domain);
  Impl* const impl = impl_.get();
  impl->ask(name, RecordType::mx, [impl, name, done = std::move(done)](Answer answer) mutable {
    MxRoute route;
    switch (answer.status) {
      case Status::temporary:
      case Status::bogus:
      case Status::no_name:
        route.status = answer.status;
        route.error = std::move(answer.error);
        done(std::move(route));
        return;
      case Status::no_data: {
        // RFC 5321 5.1: no MX, so the domain itself (after its CNAMEs) is the one host.
        std::string host = answer.canonical_name.empty() ? name : answer.canonical_name;
        impl->resolve_addresses(
            host, [host, done = std::move(done)](Status status, std::vector<std::string> addresses,
                                                 std::string error) {
              MxRoute implicit;
              implicit.implicit = true;
              implicit.status = status;
              if (status == Status::ok)
                implicit.hosts.push_back(MxHost{0, host, std::move(addresses)});
              else
                implicit.error = "no MX, and no address: " + error;
              done(std::move(implicit));
            });
        return;
      }
      case Status::ok:
        break;
    }
    if (answer.records.size() == 1 && answer.records.front().value.empty()) {
      route.status = Status::no_name;
      route.null_mx = true;
      route.error = "the domain accepts no mail (null MX, RFC 7505)";
      done(std::move(route));
      return;
    }
    impl->resolve_mx_hosts(std::move(answer.records), std::move(done));
  });
}

}  // namespace postern::lookup::dns
