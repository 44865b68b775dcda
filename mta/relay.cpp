// Destinations, the connection cache and transactions; see relay.hpp.
#include "mta/relay.hpp"

#include <algorithm>

#include "common/util/log.hpp"
#include "mta/relay_log.hpp"
#include "mta/source.hpp"
#include "mta/transaction.hpp"

namespace postern::mta {
namespace {

// What a destination's servers are is asked again after this long (connections already open
// stay); lookup's resolver caches DNS answers for their TTL anyway.
constexpr auto kResolutionLifetime = std::chrono::seconds(60);

}  // namespace

Relay::Relay(event_base* base, Resolve resolve, Report report)
    : base_(base),
      resolve_(std::move(resolve)),
      report_(std::move(report)),
      waiters_timer_(base, [this] { kick_slot_waiters(); }),
      reaper_(base, [this] { ended_.clear(); }),
      shaping_timer_(base, [this] { on_shaping_timer(); }) {}

Relay::~Relay() {
  *alive_ = false;
}

void Relay::configure(const Settings& settings) {
  const auto sources = [](const Settings& s) {
    std::vector<std::vector<std::string>> all{s.relay_source};
    for (const Route& r : s.routes) all.push_back(r.source);
    for (const Shaping& r : s.shaping) all.push_back(r.source);
    return all;
  };
  if (sources(settings) != sources(settings_)) {
    // Other source addresses: servers are asked for again (resolved() chooses the addresses),
    // and connections opened before take no more mail.
    ++sources_generation_;
    for (auto& [key, d] : destinations_) d.resolution.reset();
    std::vector<uint64_t> idle;
    for (const auto& [address, id] : idle_by_address_) idle.push_back(id);
    for (const uint64_t id : idle)
      if (Connection* c = find(id)) give_work(*c);
  }
  settings_ = settings;
  if (!encrypt_config_) {
    auto made = make_tls_client_config(std::nullopt);
    if (made.ok())
      encrypt_config_ = std::move(made).value();
    else
      log::error("TLS: %s; mail is sent without it", made.error().message.c_str());
  }
  shaper_.configure(settings_);
}

Relay::Destination& Relay::destination(const std::string& key) {
  auto it = destinations_.find(key);
  if (it == destinations_.end()) {
    Destination d;
    d.key = key;
    it = destinations_.emplace(key, std::move(d)).first;
  }
  return it->second;
}

// A session that is closed, or saying QUIT (the message limit, the idle time, room for
// another destination), takes no more work: what waits goes to another connection.
bool Relay::usable(const Connection& c) {
  return c.session && !c.session->closed() && !c.session->quitting();
}

Relay::Connection* Relay::find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

size_t Relay::idle_connections() const {
  return idle_by_address_.size();
}

void Relay::submit(const std::string& key, Delivery delivery) {
  delivery.queued = Clock::now();
  destination(key).waiting.push_back(std::move(delivery));
  dispatch(key);
}

void Relay::drop_waiting() {
  for (auto& [key, d] : destinations_) d.waiting.clear();
}

// Gives the destination's waiting deliveries to its idle connections, then to idle connections
// to the same servers, then to new connections while its limit and the global cap allow.
void Relay::dispatch(const std::string& key) {
  auto it = destinations_.find(key);
  if (it == destinations_.end()) return;
  Destination& d = it->second;
  if (d.waiting.empty() || d.resolving) return forget_if_unused(key);
  if (!d.resolution || Clock::now() - d.resolved_at > kResolutionLifetime) {
    d.resolving = true;
    resolve_(key, [this, alive = std::weak_ptr<bool>(alive_), key](Resolution r) {
      if (alive.lock()) resolved(key, std::move(r));
    });
    return;
  }
  if (d.resolution->kind != Resolution::Kind::ok) {
    const Resolution r = *d.resolution;
    if (r.kind == Resolution::Kind::temporary) d.resolution.reset();  // asked again next time
    fail_waiting(d,
                 r.kind == Resolution::Kind::permanent ? msg::DeliveryOutcome::permanent_failure
                                                       : msg::DeliveryOutcome::temporary_failure,
                 r.dsn, r.detail, "");
    return forget_if_unused(key);
  }
  if (!gate_open(d, shaper_.peek(d.site))) return forget_if_unused(key);
  for (const uint64_t id : std::vector<uint64_t>(d.connections)) {
    if (d.waiting.empty()) return;
    Connection* c = find(id);
    if (c != nullptr && c->ready && !c->busy && usable(*c)) give_work(*c);
  }
  // A connection to one of its servers, idle after another destination's mail (domains
  // hosted together, Postfix's cache lookup by address). Only to the most preferred ones: a
  // cached session to a less preferred server would carry mail past a preferred one that is
  // up (RFC 5321 5.1); that server is reached when a connection fails over to it.
  for (const Target& t : d.resolution->targets) {
    if (t.preference != d.resolution->targets.front().preference) break;
    while (!d.waiting.empty()) {
      const auto idle = idle_by_address_.find(t.cache_key());
      if (idle == idle_by_address_.end()) break;
      Connection* c = find(idle->second);
      idle_by_address_.erase(idle);
      if (c == nullptr) continue;
      const std::string previous = c->destination;
      if (previous != key) {
        auto& old = destination(previous).connections;
        std::erase(old, c->id);
        c->destination = key;
        d.connections.push_back(c->id);
        forget_if_unused(previous);
      }
      // The same server by address, by the name this destination knows it by (relay=,
      // Remote-MTA); what the connection was verified against stays in its cache key.
      c->target.host = t.host;
      give_work(*c);
      // Still idle: the site's gate closed (its rate), and c went back to the cache, where
      // this loop would find it again until the bucket refilled. What waits goes when the
      // shaping timer opens the gate.
      if (!c->busy && usable(*c)) return;
    }
  }
  size_t connecting = 0;
  for (const uint64_t id : d.connections) {
    const Connection* c = find(id);
    if (c != nullptr && !c->ready) ++connecting;
  }
  if (d.connections.empty() && !d.waiting.empty() &&
      std::all_of(d.resolution->targets.begin(), d.resolution->targets.end(),
                  [this](const Target& t) { return down(t); })) {
    // Every server failed lately: what waits is deferred until the first is due again,
    // rather than each delivery waiting out a connection that will fail.
    Clock::time_point back = Clock::time_point::max();
    std::string last;
    for (const Target& t : d.resolution->targets) {
      const Host& h = host(t);
      back = std::min(back, h.down_until);
      if (last.empty()) last = t.name() + ": " + h.last_failure;
    }
    const auto seconds = std::chrono::ceil<std::chrono::seconds>(back - Clock::now()).count();
    events::held(key, d.site, "every server is down (" + last + ")", back - Clock::now(),
                 d.waiting.size());
    fail_waiting(
        d, msg::DeliveryOutcome::temporary_failure, "4.4.1",
        "every server is down (" + last + "); tried again in " + std::to_string(seconds) + " s", "",
        static_cast<uint32_t>(std::clamp<long long>(seconds, 1, msg::kMaxRetryAfter)));
    return forget_if_unused(key);
  }
  const SiteLimits limits = shaper_.limits(d.site);
  if (d.waiting.size() > connecting && Clock::now() < d.connect_after)
    return wake_after(d.connect_after - Clock::now());
  // A site with a rate opens a connection only when the bucket has room for its first message
  // (the idle ones may have taken what it had), one at a time: one per waiting delivery would
  // mostly idle until it closed, and the receiver counts connections too. (Against a global
  // cap, a campaign to many rate-limited domains spent its time opening and closing them.)
  if (limits.rate > 0 && (connecting > 0 || !gate_open(d, shaper_.peek(d.site)))) return;
  while (d.waiting.size() > connecting && site_connections(d) < limits.connections) {
    if (connections_.size() >= settings_.connections) {
      evict_idle_elsewhere(key);
      if (std::find(slot_waiters_.begin(), slot_waiters_.end(), key) == slot_waiters_.end())
        slot_waiters_.push_back(key);
      return;
    }
    open_connection(d);
    ++connecting;
    if (limits.rate > 0) return;
  }
}

void Relay::resolved(const std::string& key, Resolution resolution) {
  auto it = destinations_.find(key);
  if (it == destinations_.end()) return;
  Destination& d = it->second;
  d.resolving = false;
  if (resolution.kind == Resolution::Kind::ok && resolution.targets.empty()) {
    resolution.kind = Resolution::Kind::temporary;
    resolution.dsn = "4.4.3";
    resolution.detail = "no server to send to";
  }
  if (resolution.kind != Resolution::Kind::ok)
    events::resolve_failed(key, resolution.kind == Resolution::Kind::permanent, resolution.dsn,
                           resolution.detail);
  // The site: by the domain (a route's first pattern) and the most preferred server's name.
  std::string domain = key;
  if (const size_t open = key.find(" ("); open != std::string::npos && key.ends_with(')'))
    domain = key.substr(open + 2, key.size() - open - 3);
  if (domain.starts_with("*.")) domain.erase(0, 2);
  d.site = shaper_.site_of(
      domain, resolution.targets.empty() ? std::string_view() : resolution.targets.front().host,
      key);
  const std::vector<std::string>& sources =
      applicable_sources(resolution.source, shaper_.rule(d.site), settings_);
  for (Target& t : resolution.targets) t.source = source_for(sources, t.address);
  d.resolution = std::move(resolution);
  d.resolved_at = Clock::now();
  dispatch(key);
}

void Relay::fail_waiting(Destination& d, msg::DeliveryOutcome outcome, const std::string& dsn,
                         const std::string& detail, const std::string& remote_mta,
                         uint32_t retry_after) {
  std::deque<Delivery> waiting = std::move(d.waiting);
  d.waiting.clear();
  for (Delivery& delivery : waiting) {
    for (const size_t k : delivery.recipients) {
      msg::DeliveryResult r;
      r.outcome = outcome;
      r.dsn = dsn;
      r.detail = detail.substr(0, msg::kMaxDeliveryDetail);
      r.remote_mta = remote_mta;
      r.retry_after = std::min(retry_after, msg::kMaxRetryAfter);
      report_(*delivery.job, k, std::move(r));
    }
  }
}

void Relay::on_ready(uint64_t id) {
  Connection* c = find(id);
  if (c == nullptr) return;
  c->ready = true;
  c->ready_at = Clock::now();
  c->targets.clear();
  const auto& facts = c->session->tls_facts();
  c->tls = facts && facts->established ? facts->to_string() : "";
  if (!c->tls.empty()) events::tls(id, c->destination, c->target, &*facts, {}, {});
  destination(c->destination).refused_in_a_row = 0;
  Host& h = host(c->target);
  if (h.failures > 0) log::info("%s: up again", c->target.name().c_str());
  h.failures = 0;
  h.down_until = {};
  give_work(*c);
}

// The connection ended. Before it was ready: the next server is tried; when none is left and
// the destination has no other connection, what waits for it is deferred with the last
// failure. A ready one leaves room for another.
void Relay::on_closed(uint64_t id) {
  Connection* c = find(id);
  if (c == nullptr) return;
  unpark(*c);
  ended_.push_back(std::move(c->session));
  reaper_.arm(std::chrono::milliseconds(0));
  const std::string key = c->destination;
  if (!c->ready && ended_.back()->failure() &&
      fall_back_to_plaintext(*c, *ended_.back()->failure()))
    return;
  c->plaintext = false;
  if (!c->ready) {
    const std::optional<mail::RecipientResult>& failure = ended_.back()->failure();
    const mail::RecipientResult why =
        failure ? *failure
                : mail::RecipientResult{mail::RecipientStatus::temporary,
                                        mail::ClientPhase::connect, 0, "4.4.1", "cannot connect"};
    const std::optional<int64_t> down_for = host_failed(*c, why);
    events::connect_failed(id, key, c->target, delivery_result(why, Target{}, "").detail, down_for,
                           c->target_index + 1 < c->targets.size());
  } else {
    const std::optional<mail::RecipientResult>& failure = ended_.back()->failure();
    events::closed(id, key, c->target, failure.has_value(),
                   failure              ? delivery_result(*failure, Target{}, "").detail
                   : c->closing.empty() ? "closed"
                                        : c->closing,
                   c->sent);
  }
  if (!c->ready && c->target_index + 1 < c->targets.size()) {
    ++c->target_index;
    connect(*c);
    return;
  }
  if (!c->ready) {
    const std::optional<mail::RecipientResult>& failure = ended_.back()->failure();
    mail::RecipientResult why =
        failure ? *failure
                : mail::RecipientResult{mail::RecipientStatus::temporary,
                                        mail::ClientPhase::connect, 0, "4.4.1", "cannot connect"};
    if (why.from_server()) {
      // What the server had let in when it refused this one: the site's connections that are
      // up, and those opened before this one (it answers them first).
      const size_t open = site_connections(
          destination(key), [id](const Connection& other) { return other.ready || other.id < id; });
      if (shaper_.observe(destination(key).site, why, c->target.name(), open).triggered)
        wake_after(std::chrono::seconds(1));
    }
    // RFC 3463 X.7.5: the handshake failed, or the certificate was refused, or TLS could not
    // be set up here.
    if (c->tls_impossible) why.phase = mail::ClientPhase::tls;
    if (why.phase == mail::ClientPhase::tls && !why.from_server()) why.status_code = "4.7.5";
    Destination& d = destination(key);
    const bool others = std::any_of(d.connections.begin(), d.connections.end(),
                                    [&](uint64_t o) { return o != id && find(o) != nullptr; });
    retire(*c);
    if (others && why.from_server()) {
      // Refused while others are up ("too many connections"): the next one waits a while,
      // longer each time in a row, rather than knocking again at once.
      d.refused_in_a_row = std::min<uint32_t>(d.refused_in_a_row + 1, kMaxConnectHold);
      d.connect_after = Clock::now() + std::chrono::seconds(d.refused_in_a_row);
    }
    if (!others) {
      const msg::DeliveryResult r = delivery_result(why, Target{}, "");
      fail_waiting(d, msg::DeliveryOutcome::temporary_failure, r.dsn.empty() ? "4.4.1" : r.dsn,
                   r.detail, "");
    }
  } else {
    retire(*c);
  }
  dispatch(key);
  kick_slot_waiters();
}

void Relay::retire(Connection& c) {
  unpark(c);
  const uint64_t id = c.id;
  auto it = destinations_.find(c.destination);
  if (it != destinations_.end()) std::erase(it->second.connections, id);
  if (c.session) {
    ended_.push_back(std::move(c.session));
    reaper_.arm(std::chrono::milliseconds(0));
  }
  connections_.erase(id);
}

void Relay::give_work(Connection& c) {
  Destination& d = destination(c.destination);
  if (c.sources_generation != sources_generation_ && usable(c) && !c.busy) {
    unpark(c);
    close_for(c, "reload");  // on_closed opens another for what waits
    return;
  }
  while (!d.waiting.empty() && !c.busy) {
    if (!usable(c)) return;
    if (!gate_open(d, shaper_.admit(d.site))) break;
    Delivery delivery = std::move(d.waiting.front());
    d.waiting.pop_front();
    start(c, d, std::move(delivery));
  }
  // A site with a rate opens its connections one at a time (dispatch): when more waits than
  // this busy one carries, dispatch looks again once the bucket has room, and opens another
  // if none is free to take it (a slow server needs several to reach the rate).
  if (c.busy && !d.waiting.empty() && shaper_.limits(d.site).rate > 0) {
    const Shaper::Gate gate = shaper_.peek(d.site);
    if (gate.kind != Shaper::Gate::Kind::defer) wake_after(gate.delay);
  }
  if (!c.busy) park(c);
}

void Relay::start(Connection& c, Destination& d, Delivery delivery) {
  unpark(c);
  Job& job = *delivery.job;
  const Envelope& envelope = job.message.envelope;
  const mail::Capabilities& caps = c.session->capabilities();
  if (const auto refusal = refuse_before_sending(envelope, caps)) {
    for (const size_t k : delivery.recipients) {
      msg::DeliveryResult r;
      r.outcome = msg::DeliveryOutcome::permanent_failure;
      r.dsn = refusal->dsn;
      r.detail = refusal->detail;
      r.remote_mta = c.target.name();
      r.tls = c.tls.empty() ? "none" : c.tls;
      r.source = c.target.source;
      report_(job, k, std::move(r));
    }
    return;  // the connection stays free for the next
  }
  const size_t recipient_limit =
      std::min<size_t>(d.recipient_limit, shaper_.limits(d.site).recipients);
  if (delivery.recipients.size() > recipient_limit) {
    Delivery rest{delivery.job, {}, delivery.retried, delivery.queued, {}};
    rest.recipients.assign(delivery.recipients.begin() + static_cast<ptrdiff_t>(recipient_limit),
                           delivery.recipients.end());
    delivery.recipients.resize(recipient_limit);
    d.waiting.push_front(std::move(rest));
  }
  mail::ClientTransaction t;
  t.sender = envelope.sender;
  t.mail_parameters = mail_parameters(envelope, caps);
  for (const size_t k : delivery.recipients) {
    const msg::RemoteRecipient& r = job.message.recipients[k];
    t.recipients.push_back({r.address, rcpt_parameters(r, caps)});
  }
  t.message = job.data();
  c.busy = true;
  delivery.started = Clock::now();
  events::connect(envelope.id, c.id, d.key, c.target, c.messages > 0, c.tls);
  const uint64_t id = c.id;
  c.session->send(std::move(t), [this, id, delivery = std::move(delivery)](
                                    std::vector<mail::RecipientResult> results) mutable {
    on_results(id, std::move(delivery), std::move(results));
  });
}

void Relay::on_results(uint64_t id, Delivery delivery, std::vector<mail::RecipientResult> results) {
  Connection* c = find(id);
  if (c == nullptr) return;
  Destination& d = destination(c->destination);
  const bool reused = c->messages > 0;
  ++c->messages;
  c->busy = false;
  const bool stale = reused && !delivery.retried && !results.empty() &&
                     std::all_of(results.begin(), results.end(), [](const auto& r) {
                       return !r.from_server() && r.phase == mail::ClientPhase::mail;
                     });
  const size_t accepted = static_cast<size_t>(std::count_if(
      results.begin(), results.end(),
      [](const mail::RecipientResult& r) { return r.status == mail::RecipientStatus::delivered; }));
  bool too_fast = false;
  if (!stale) {
    if (accepted > 0) {
      ++c->sent;
      shaper_.delivered(d.site);
      ++host(c->target).messages;
    }
    // The site's reply rules see each distinct reply of the transaction once (a 421 to MAIL
    // is every recipient's result, but one answer).
    std::vector<std::string> observed;
    bool slowing = false;
    for (const mail::RecipientResult& r : results) {
      std::string reply = std::to_string(r.code) + r.status_code + r.text;
      if (std::find(observed.begin(), observed.end(), reply) != observed.end()) continue;
      observed.push_back(std::move(reply));
      const Shaper::Observed seen = shaper_.observe(d.site, r, c->target.name());
      if (seen.triggered) wake_after(std::chrono::seconds(1));
      slowing = slowing || (seen.matched && seen.action != ReplyAction::suspend);
    }
    too_fast = slowing && !delivery.retried && !results.empty() &&
               std::all_of(results.begin(), results.end(), [](const auto& r) {
                 return r.status == mail::RecipientStatus::temporary;
               });
  }
  if (stale || too_fast) {
    // Stale: the server had closed the cached connection as we used it. Too fast: the server
    // asked the site to slow down, which it now does; the message was not refused. Either
    // way it goes once more from here (too fast: when the site's gate lets it), rather than
    // back to the queue's back-off.
    delivery.retried = true;
    d.waiting.push_front(std::move(delivery));
  } else {
    Delivery again{delivery.job, {}, delivery.retried, delivery.queued, {}};
    for (size_t i = 0; i < results.size() && i < delivery.recipients.size(); ++i) {
      if (accepted > 0 && too_many_recipients(results[i])) {
        again.recipients.push_back(delivery.recipients[i]);
        continue;
      }
      msg::DeliveryResult r =
          delivery_result(results[i], c->target, c->tls.empty() ? "none" : c->tls);
      r.relayed = r.outcome == msg::DeliveryOutcome::delivered && !c->session->capabilities().dsn;
      set_delays(r, delivery, c->opened, c->ready_at, !reused);
      report_(*delivery.job, delivery.recipients[i], std::move(r));
    }
    if (!again.recipients.empty()) {
      // The server's limit, learned: later messages are split before it has to say so.
      d.recipient_limit = std::max<size_t>(1, accepted);
      d.waiting.push_front(std::move(again));
    }
  }
  if (c->session->closed()) return;  // on_closed follows
  const SiteLimits limits = shaper_.limits(d.site);
  // (Beyond a lowered concurrency, connections close as their transactions end.)
  if (c->messages >= limits.messages_per_connection ||
      site_connections(d, [](const Connection& o) { return o.ready; }) > limits.connections) {
    close_for(*c,
              c->messages >= limits.messages_per_connection ? "message limit" : "connection limit");
    dispatch(c->destination);  // another connection takes what waits
    return;
  }
  give_work(*c);
}

void Relay::park(Connection& c) {
  if (c.busy || !c.ready || !usable(c)) return;
  unpark(c);
  idle_by_address_.emplace(c.target.cache_key(), c.id);
  c.idle->arm(std::chrono::seconds(settings_.connection_idle));
  // Someone waiting for room under the global cap takes this one's place: as it is when its
  // mail goes to the same server (dispatched on the next loop turn, it finds c by address),
  // else closed to make room.
  if (!slot_waiters_.empty()) {
    const std::string waiter = slot_waiters_.front();
    if (waiter == c.destination) return;
    if (goes_to(waiter, c.target.cache_key())) {
      waiters_timer_.arm(std::chrono::milliseconds(0));
      return;
    }
    unpark(c);
    close_for(c, "room for another destination");
  }
}

bool Relay::goes_to(const std::string& key, const std::string& cache_key) const {
  const auto it = destinations_.find(key);
  if (it == destinations_.end() || !it->second.resolution) return false;
  const std::vector<Target>& targets = it->second.resolution->targets;
  // Only its most preferred servers, as dispatch takes idle connections.
  return std::any_of(targets.begin(), targets.end(), [&](const Target& t) {
    return t.preference == targets.front().preference && t.cache_key() == cache_key;
  });
}

void Relay::unpark(Connection& c) {
  if (c.idle) c.idle->cancel();
  for (auto it = idle_by_address_.begin(); it != idle_by_address_.end(); ++it) {
    if (it->second == c.id) {
      idle_by_address_.erase(it);
      return;
    }
  }
}

bool Relay::evict_idle_elsewhere(const std::string& key) {
  for (const auto& [address, id] : idle_by_address_) {
    Connection* c = find(id);
    if (c == nullptr || c->destination == key) continue;
    unpark(*c);
    close_for(*c, "room for another destination");
    return true;
  }
  return false;
}

void Relay::kick_slot_waiters() {
  std::deque<std::string> waiters = std::move(slot_waiters_);
  slot_waiters_.clear();
  for (const std::string& key : waiters) dispatch(key);
}

bool Relay::gate_open(Destination& d, const Shaper::Gate& gate) {
  if (gate.kind == Shaper::Gate::Kind::go) return true;
  if (gate.kind == Shaper::Gate::Kind::wait) {
    wake_after(gate.delay);
    return false;
  }
  // Suspended, or no room soon: the queue tries again when the site has room, and no
  // connection is attempted meanwhile.
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(gate.delay).count();
  events::held(d.key, d.site, gate.why, gate.delay, d.waiting.size());
  fail_waiting(d, msg::DeliveryOutcome::temporary_failure, "4.7.0", gate.why, "",
               static_cast<uint32_t>(std::clamp<long long>(seconds, 1, msg::kMaxRetryAfter)));
  return false;
}

void Relay::wake_after(Clock::duration delay) {
  const auto due = Clock::now() + delay;
  if (shaping_timer_.pending() && shaping_due_ <= due) return;
  shaping_due_ = due;
  shaping_timer_.arm(std::chrono::ceil<std::chrono::milliseconds>(delay));
}

void Relay::on_shaping_timer() {
  const bool altered = shaper_.tick();
  std::vector<std::string> keys;
  for (const auto& [key, d] : destinations_)
    if (!d.waiting.empty()) keys.push_back(key);
  for (const std::string& key : keys) dispatch(key);
  if (altered) wake_after(std::chrono::seconds(1));
}

size_t Relay::site_connections(const Destination& d,
                               const std::function<bool(const Connection&)>& keep) const {
  auto count = [&](const Destination& one) {
    if (!keep) return one.connections.size();
    return static_cast<size_t>(
        std::count_if(one.connections.begin(), one.connections.end(), [&](uint64_t id) {
          const auto it = connections_.find(id);
          return it != connections_.end() && keep(*it->second);
        }));
  };
  if (d.site.empty() || d.site == d.key) return count(d);
  size_t n = 0;
  for (const auto& [key, other] : destinations_)
    if (other.site == d.site) n += count(other);
  return n;
}

void Relay::forget_if_unused(const std::string& key) {
  auto it = destinations_.find(key);
  if (it == destinations_.end()) return;
  const Destination& d = it->second;
  if (d.waiting.empty() && d.connections.empty() && !d.resolving) destinations_.erase(it);
}

std::string Relay::describe() const {
  std::string text;
  std::vector<std::string> sites;
  for (const auto& [key, d] : destinations_) {
    size_t ready = 0;
    for (const uint64_t id : d.connections) {
      const auto it = connections_.find(id);
      if (it != connections_.end() && it->second->ready) ++ready;
    }
    text += key + ": " + std::to_string(d.connections.size()) + " connections (" +
            std::to_string(ready) + " ready), " + std::to_string(d.waiting.size()) +
            " deliveries waiting, server takes " + std::to_string(d.recipient_limit) +
            " recipients a transaction" + (d.site.empty() ? "" : ", site " + d.site) + "\n";
    if (!d.site.empty()) sites.push_back(d.site);
  }
  for (const std::string& site : shaper_.altered()) sites.push_back(site);
  std::sort(sites.begin(), sites.end());
  sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
  for (const std::string& site : sites) text += shaper_.describe(site);
  return text;
}

}  // namespace postern::mta
