// Reaching servers: the client options and TLS of a connection, its fallback to plaintext,
// and the servers that are down (smtpctl show hosts); see relay.hpp.
#include <algorithm>

#include "common/mail/tls_client_stream.hpp"
#include "common/util/log.hpp"
#include "mta/relay.hpp"
#include "mta/relay_log.hpp"

namespace postern::mta {
namespace {

// A server whose opportunistic TLS failed is sent to in the clear for this long.
constexpr auto kTlsBrokenLifetime = std::chrono::hours(1);

std::optional<mail::Endpoint> endpoint_of(const Target& t) {
  auto endpoint =
      mail::parse_endpoint(t.key().substr(std::string(mail::scheme_prefix(t.scheme)).size()));
  if (endpoint && !t.source.empty()) endpoint->source = mail::parse_source(t.source);
  return endpoint;
}

}  // namespace

mail::ClientTimeouts client_timeouts(const Settings& s) {
  auto seconds = [](uint32_t n) { return std::chrono::milliseconds(std::chrono::seconds(n)); };
  mail::ClientTimeouts t;
  t.connect = seconds(s.timeout_connect);
  t.greeting = seconds(s.timeout_greeting);
  t.hello = seconds(s.timeout_hello);
  t.mail = seconds(s.timeout_mail);
  t.rcpt = seconds(s.timeout_rcpt);
  t.data = seconds(s.timeout_data);
  t.data_block = seconds(s.timeout_data_block);
  t.data_end = seconds(s.timeout_data_end);
  t.quit = seconds(s.timeout_quit);
  return t;
}

std::string Target::name() const {
  return host + "[" + address + "]:" + std::to_string(port);
}

std::string Target::key() const {
  const bool v6 = address.find(':') != std::string::npos;
  return std::string(mail::scheme_prefix(scheme)) + (v6 ? "[" + address + "]" : address) + ":" +
         std::to_string(port);
}

std::string Target::cache_key() const {
  std::string k = key() + " " + std::string(mail::policy_name(tls));
  if (tls == mail::TlsPolicy::verify) k += " " + host;
  // An authenticated session is its login's: mail for which another login (or none) is
  // configured does not ride on it.
  if (auth) k += " auth " + auth->login;
  if (!source.empty()) k += " from " + source;
  return k;
}

void Relay::open_connection(Destination& d) {
  auto c = std::make_unique<Connection>();
  c->id = next_connection_++;
  c->destination = d.key;
  c->opened = Clock::now();
  c->targets = d.resolution->targets;
  // Servers that are down are tried last (dispatch defers when every one is).
  std::stable_partition(c->targets.begin(), c->targets.end(),
                        [this](const Target& t) { return !down(t); });
  const uint64_t id = c->id;
  c->idle = std::make_unique<Timer>(base_, [this, id] {
    if (Connection* idle = find(id)) {
      unpark(*idle);
      close_for(*idle, "idle");
    }
  });
  d.connections.push_back(id);
  Connection& ref = *c;
  connections_.emplace(id, std::move(c));
  connect(ref);
}

void Relay::set_ca(const std::string& pem, const std::string& name) {
  auto made = make_tls_client_config(std::string_view(pem));
  if (made.ok()) {
    verify_config_ = std::move(made).value();
    verify_problem_.clear();
    return;
  }
  verify_config_.reset();
  verify_problem_ = name + ": " + made.error().message;
  log::error("CA certificates %s: servers cannot be verified", verify_problem_.c_str());
}

void Relay::connect(Connection& c) {
  c.target = c.targets[c.target_index];
  c.sources_generation = sources_generation_;
  const uint64_t id = c.id;
  mail::ClientOptions options;
  options.dialect = c.target.scheme == mail::RelayScheme::lmtp ? mail::ClientDialect::lmtp
                                                               : mail::ClientDialect::smtp;
  options.helo_name = settings_.hostname.empty() ? "localhost" : settings_.hostname;
  options.pipelining = true;
  options.timeouts = client_timeouts(settings_);
  options.ready = [this, id](mail::ClientSession&) { on_ready(id); };
  if (c.target.auth) options.auth = *c.target.auth;
  std::unique_ptr<mail::ClientStream> smtps;
  const std::string impossible = arrange_tls(c, options, smtps);
  c.session = std::make_unique<mail::ClientSession>(
      base_, std::move(options), [this, id](mail::ClientSession&) { on_closed(id); });
  c.tls_impossible = !impossible.empty();
  if (c.tls_impossible) return c.session->open(mail::failed_stream(base_, impossible));
  if (smtps) return c.session->open(std::move(smtps));
  c.session->open(*endpoint_of(c.target));
}

std::string Relay::arrange_tls(Connection& c, mail::ClientOptions& options,
                               std::unique_ptr<mail::ClientStream>& smtps) {
  const Target& t = c.target;
  const auto endpoint = endpoint_of(t);
  // (Targets are IP addresses: MtaProcess checks them.)
  if (!endpoint) return "cannot connect to " + t.name() + ": not an IP address";
  if (t.tls == mail::TlsPolicy::none) return {};
  const bool verify = t.tls == mail::TlsPolicy::verify;
  if (t.tls == mail::TlsPolicy::opportunistic) {
    const auto broken = tls_broken_.find(t.key());
    if (broken != tls_broken_.end() && broken->second <= Clock::now()) tls_broken_.erase(broken);
    if (c.plaintext || tls_broken_.contains(t.key())) return {};
  }
  std::shared_ptr<tls_config> config = verify ? verify_config_ : encrypt_config_;
  if (!config) {
    std::string why =
        "TLS is required (policy " + std::string(mail::policy_name(t.tls)) +
        ") but cannot be had: " + (verify ? verify_problem_ : std::string("no TLS configuration"));
    events::tls(c.id, c.destination, t, nullptr, why, "deferred");
    return why;
  }
  const std::string name = t.host;
  event_base* base = base_;
  auto wrap = [base, config, name, verify](std::unique_ptr<mail::ClientStream> plain,
                                           bool connected) -> std::unique_ptr<mail::ClientStream> {
    // (Without a context the stream fails on the loop, saying so.)
    auto context = make_tls_client(config.get());
    if (!context.ok()) log::warn("%s: %s", name.c_str(), context.error().message.c_str());
    return mail::wrap_tls(base, std::move(plain), connected,
                          context.ok() ? std::move(context).value() : TlsPtr(), name, verify);
  };
  if (t.scheme == mail::RelayScheme::smtps) {
    smtps = wrap(mail::connect_plain(base_, *endpoint), false);
    return {};
  }
  options.start_tls = [wrap](std::unique_ptr<mail::ClientStream> plain) {
    return wrap(std::move(plain), true);
  };
  options.require_tls = t.tls != mail::TlsPolicy::opportunistic;
  return {};
}

bool Relay::fall_back_to_plaintext(Connection& c, const mail::RecipientResult& failure) {
  if (failure.phase != mail::ClientPhase::tls) return false;
  const bool fallback = c.target.tls == mail::TlsPolicy::opportunistic &&
                        settings_.plaintext_fallback && !c.plaintext;
  events::tls(c.id, c.destination, c.target, nullptr, failure.text,
              fallback ? "plaintext" : "deferred");
  if (!fallback) return false;
  constexpr size_t kMaxBroken = 10000;
  if (tls_broken_.size() >= kMaxBroken) tls_broken_.clear();
  tls_broken_[c.target.key()] = Clock::now() + kTlsBrokenLifetime;
  c.plaintext = true;
  connect(c);
  return true;
}

namespace {

// A server as reached from one source address: down from one may be up from another (a bind
// that fails is the source's trouble, not the server's).
std::string host_key(const Target& t) {
  return t.source.empty() ? t.key() : t.key() + " from " + t.source;
}

}  // namespace

Relay::Host& Relay::host(const Target& t) {
  const std::string key = host_key(t);
  auto it = hosts_.find(key);
  if (it == hosts_.end()) {
    if (hosts_.size() >= kMaxHosts) {
      const auto now = Clock::now();
      std::erase_if(hosts_, [&](const auto& entry) { return entry.second.down_until <= now; });
    }
    // Named once: this runs for every transaction that delivers.
    Host fresh;
    fresh.name = t.source.empty() ? t.name() : t.name() + " from " + t.source;
    it = hosts_.emplace(key, std::move(fresh)).first;
  }
  return it->second;
}

bool Relay::down(const Target& t) const {
  const auto it = hosts_.find(host_key(t));
  return it != hosts_.end() && it->second.down_until > Clock::now();
}

void Relay::close_for(Connection& c, const char* reason) {
  c.closing = reason;
  c.session->quit();
}

std::optional<int64_t> Relay::host_failed(const Connection& c,
                                          const mail::RecipientResult& failure) {
  // Only a server that could not be reached is down: one that answers, even to refuse, is up
  // (its replies go to the site's reply rules), and a failed TLS handshake has its fallback.
  if (failure.from_server() || failure.phase != mail::ClientPhase::connect || c.tls_impossible)
    return std::nullopt;
  Host& h = host(c.target);
  h.failures = std::min<uint32_t>(h.failures + 1, 16);
  const auto hold =
      std::min<Clock::duration>(kHostDownMost, kHostDownFirst * (1 << (h.failures - 1)));
  h.down_until = Clock::now() + hold;
  h.last_failure = failure.text;
  return std::chrono::ceil<std::chrono::seconds>(hold).count();
}

std::string Relay::describe_hosts() const {
  struct Counts {
    size_t open = 0;
    size_t ready = 0;
    size_t idle = 0;
  };
  std::map<std::string, Counts> counts;
  for (const auto& [id, c] : connections_) {
    Counts& n = counts[host_key(c->target)];
    ++n.open;
    if (c->ready) ++n.ready;
    if (c->ready && !c->busy) ++n.idle;
  }
  std::string text;
  const auto now = Clock::now();
  for (const auto& [key, h] : hosts_) {
    const auto it = counts.find(key);
    const Counts n = it != counts.end() ? it->second : Counts{};
    text += h.name + ": " + std::to_string(n.open) + " connections (" + std::to_string(n.ready) +
            " ready, " + std::to_string(n.idle) + " idle), " + std::to_string(h.messages) +
            " messages";
    if (h.down_until > now)
      text += "; down for " +
              std::to_string(std::chrono::ceil<std::chrono::seconds>(h.down_until - now).count()) +
              " s more after " + std::to_string(h.failures) + " failures: " + h.last_failure;
    else if (h.failures > 0)
      text += "; " + std::to_string(h.failures) + " failures in a row, last: " + h.last_failure;
    text += "\n";
  }
  return text;
}

}  // namespace postern::mta
