// DNS questions on libunbound's event mode; see dns.hpp. Answers come from the network through
// libunbound and are read only with ldns (parse_answer, dns_answer.cpp). Nothing of ours runs
// inside a libunbound callback but parsing and queueing: the rest runs from our own event.
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

bool is_loopback_code(const std::string& address) {
  in_addr parsed{};
  return inet_pton(AF_INET, address.c_str(), &parsed) == 1 && (ntohl(parsed.s_addr) >> 24) == 127;
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

  Impl(event_base* base_in, ResolverOptions options_in, UbCtxPtr ctx_in)
      : base(base_in),
        options(std::move(options_in)),
        ctx(std::move(ctx_in)),
        drain_event(event_new(base_in, -1, 0, &Impl::on_drain, this)),
        rng(std::random_device{}()) {
    const timeval timeout = to_timeval(std::chrono::milliseconds(options.timeout_ms));
    // All questions share one duration: libevent keeps such timers in a queue, not the heap.
    const timeval* common = event_base_init_common_timeout(base, &timeout);
    question_timeout = common ? *common : timeout;
  }
  // The drain event and every question point back at this Impl.
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

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
      post([then = std::move(then)] {
        then(Answer::failure(Status::no_name, "invalid domain name"));
      });
      return;
    }
    if (questions.size() >= options.max_in_flight) {
      ++counters.failures;
      post([then = std::move(then)] {
        then(Answer::failure(Status::temporary, "too many DNS queries in flight"));
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
        then(Answer::failure(status, why));
      });
      return;
    }
    if (found != questions.end()) found->second->async_id = async_id;
  }

  // The signature is libunbound's ub_event_callback_type.
  static void on_answer(void* arg, int rcode, void* packet, int length, int security,
                        char* why_bogus,  // NOLINT(readability-non-const-parameter)
                        int /*was_ratelimited*/) {
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
    ++impl->counters.answer_buckets[latency_bucket(us)];

    Answer answer;
    if (security == 1) {
      answer = Answer::failure(Status::bogus, std::string("DNSSEC validation failed: ") +
                                                  (why_bogus ? why_bogus : "no reason given"));
    } else if (rcode == LDNS_RCODE_NXDOMAIN) {
      answer = Answer::failure(Status::no_name, "no such domain");
    } else if (rcode != 0 || !packet || length <= 0) {
      answer = Answer::failure(Status::temporary,
                               "DNS server failure (rcode " + std::to_string(rcode) + ")");
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
      then(Answer::failure(Status::temporary, "DNS timeout after " + std::to_string(ms) + " ms"));
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
      [done = std::move(done)](Status status, std::vector<std::string> addresses,
                               const std::string&) { done(status, std::move(addresses)); });
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
                                                 const std::string& error) {
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
