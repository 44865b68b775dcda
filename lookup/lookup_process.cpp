// The lookup process's handlers (lookup_process.hpp): sessions and the relay check, client
// checks, MX queries, local routes, credentials and AUTH. Passwords it checks are wiped once
// checked and never logged.
#include "lookup/lookup_process.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "common/util/inet.hpp"
#include "common/util/io.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "mta/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"
#include "smtpd/api.hpp"

namespace postern::lookup {
namespace {

// Every wrong password waits at least this long before it is answered.
constexpr std::chrono::milliseconds kFailureDelay{1000};
// AUTH checks held back at once (AuthThrottle's delays); smtp's session limit keeps far below.
constexpr size_t kMaxHeldChecks = 10000;
constexpr size_t kMaxTableBytes = 16 << 20;

// Sessions lookup remembers at once (about 25 MB at most, even if a compromised smtp
// announces one connection again and again). limits.sessions defaults to 1000; a session
// beyond this bound is not remembered and cannot relay, with a warning.
constexpr size_t kMaxSessions = 100000;

msg::MxStatus mx_status(const dns::MxRoute& route) {
  switch (route.status) {
    case dns::Status::ok:
      return msg::MxStatus::ok;
    case dns::Status::no_name:
      return route.null_mx ? msg::MxStatus::null_mx : msg::MxStatus::no_domain;
    case dns::Status::no_data:
      return msg::MxStatus::no_address;
    case dns::Status::temporary:
    case dns::Status::bogus:
      break;
  }
  return msg::MxStatus::temporary;
}

// event=table (docs/logging.md): a table the parent sent, loaded or refused. A refused one
// leaves the table already loaded by that name (if any) in use.
std::string_view table_kind_name(msg::TableKind kind) {
  // In the order of msg::TableKind.
  constexpr std::array<std::string_view, msg::kTableKindCount> kNames = {"credentials", "aliases",
                                                                         "users", "senders"};
  return kNames.at(static_cast<size_t>(kind));
}

void log_table_loaded(msg::TableKind kind, const std::string& name, size_t entries) {
  log::Line()
      .add("event", "table")
      .add("table", name)
      .add("kind", table_kind_name(kind))
      .add("result", "loaded")
      .number("entries", entries)
      .info();
}

void log_table_refused(msg::TableKind kind, const std::string& name, const std::string& error) {
  log::Line()
      .add("event", "table")
      .add("table", name)
      .add("kind", table_kind_name(kind))
      .add("result", "refused")
      .add("error", error)
      .error();
}

}  // namespace

LookupProcess::LookupProcess(ChildRuntime& runtime) : runtime_(runtime) {
  runtime_.on_status([this] { count_latencies(); });
  auto& d = runtime_.dispatcher();
  d.on<Settings>([this](msg::Incoming&, Settings&& m) { configure(m); });
  d.on<msg::RcptCheck>([this](msg::Incoming& in, msg::RcptCheck&& m) {
    runtime_.counters()["rcpt_checks"] = ++rcpt_checks_;
    // Relaying rests on what lookup verified for this session, not on smtp's flag.
    const VerifiedSession* session = find_session(m.session);
    const bool claimed = m.authenticated;
    m.authenticated = session != nullptr && relays_anywhere(*session);
    msg::RcptDecision decision = policy_.decide(m);
    // A session from before a restart of lookup: it cannot vouch now; the client may retry.
    if (decision == msg::RcptDecision::relay_denied && claimed && session == nullptr)
      decision = msg::RcptDecision::temporary;
    if (decision == msg::RcptDecision::local) ++rcpt_known_;
    if (decision == msg::RcptDecision::unknown_user) ++rcpt_unknown_;
    answer(in, msg::RcptVerdict{.decision = decision});
  });
  d.on<msg::TableFile>([this](msg::Incoming& in, msg::TableFile&& m) {
    const Status loaded =
        m.kind == msg::TableKind::credentials ? load_credentials(m.name, in.fd.get())
        : m.kind == msg::TableKind::senders   ? load_senders(m.name, in.fd.get())
                                              : load_routing_table(m.kind, m.name, in.fd.get());
    // Asked by smtpctl update table: the parent passes the outcome on.
    if (in.request_id != 0 &&
        !msg::send(
            runtime_.parent(),
            msg::TableLoaded{.ok = loaded.ok(), .error = loaded.ok() ? "" : loaded.error().message},
            in.request_id))
      log::warn("cannot answer the parent");
  });
  d.on<msg::ClientCheck>([this](msg::Incoming& in, msg::ClientCheck&& m) { check_client(in, m); });
  d.on<msg::MxQuery>([this](msg::Incoming& in, msg::MxQuery&& m) { find_mx(in, m); });
  d.on<msg::CtlShowStats>([this](msg::Incoming& in, msg::CtlShowStats&&) { show_stats(in); });
  d.on<msg::ResolveLocal>(
      [this](msg::Incoming& in, msg::ResolveLocal&& m) { resolve_local(in, m); });
  d.on<msg::ForwardFile>(
      [this](msg::Incoming& in, msg::ForwardFile&& m) { forward_answered(in, m); });
  d.on<msg::SessionOpen>([this](msg::Incoming& in, msg::SessionOpen&& m) { open_session(in, m); });
  d.on<msg::SessionClose>(
      [this](msg::Incoming&, msg::SessionClose&& m) { close_session(m.session); });
  d.on<msg::RelayCheck>([this](msg::Incoming& in, msg::RelayCheck&& m) { check_relay(in, m); });
  d.on<msg::SenderCheck>([this](msg::Incoming& in, msg::SenderCheck&& m) { check_sender(in, m); });
  runtime_.on_peer_lost([this](Role peer) {
    // A new smtp numbers its sessions afresh: nothing vouched for the old one may carry over.
    if (peer == Role::smtp) forget_sessions();
    // A new mda numbers its requests afresh: an answer held for the old one is no one's.
    std::erase_if(held_resolves_, [peer](const HeldResolve& h) { return h.from == peer; });
  });
  d.on<msg::AuthCheck>([this](msg::Incoming& in, msg::AuthCheck&& m) {
    check_credentials(in, m);
    explicit_bzero(m.password.data(), m.password.size());
  });
  runtime_.counters()["rcpt_checks"] = 0;
  runtime_.counters()["auth_failures"] = 0;
}

void LookupProcess::configure(const Settings& m) {
  router_.configure(m.domains, {.min_uid = accounts::kDefaultMinUid,
                                .daemon_users = m.daemon_users,
                                .daemon_uids = m.daemon_uids});
  trusted_ = m.trusted_networks;
  trusted_relay_ = m.trusted_networks_relay;
  relay_domains_.configure(m.relay_domains);
  senders_.configure(m.sender_rule, m.domains, m.senders.has_value());
  connection_rate_.set_limit(m.connection_rate);
  checks_.clear();
  for (const auto& [listener, checks] : m.checks) checks_[listener] = checks;
  if (resolver_ && m.dns == dns_) return;
  // A new resolver drops the questions of the old one: their clients pass (fail-open).
  ipc::Channel* smtp = runtime_.peer(Role::smtp);
  for (const auto& [id, flight] : in_flight_)
    if (smtp == nullptr || !msg::send(*smtp, msg::ClientVerdict{}, flight->request_id))
      log::warn("cannot answer smtp");
  in_flight_.clear();
  resolver_.reset();
  dns_ = m.dns;
  dns::ResolverOptions options;
  options.forwarders = m.dns.resolvers;
  options.timeout_ms = m.dns.timeout * 1000;
  auto created = dns::Resolver::create(runtime_.base(), options);
  if (!created.ok()) {
    log::Line()
        .add("event", "dns_failure")
        .add("check", "resolver")
        .add("reason", created.error().message)
        .add("action", "client checks pass everybody, routes fail temporarily")
        .error();
    return;
  }
  resolver_ = std::move(created).value();
  std::string servers;
  for (const auto& r : m.dns.resolvers) servers += " " + r;
  log::info("DNS through%s", servers.empty() ? " nothing: no resolver known" : servers.c_str());
}

const VerifiedSession* LookupProcess::find_session(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

void LookupProcess::open_session(msg::Incoming& in, const msg::SessionOpen& m) {
  const unsigned long long id = m.session;
  sessions_.erase(m.session);  // a reused id starts over, unauthenticated
  sockaddr_storage peer{};
  sockaddr_storage local{};
  socklen_t peer_len = sizeof peer;
  socklen_t local_len = sizeof local;
  int type = 0;
  socklen_t type_len = sizeof type;
  const int fd = in.fd.get();
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 || type != SOCK_STREAM ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      (peer.ss_family != AF_INET && peer.ss_family != AF_INET6)) {
    log::warn("smtp announced session %016llx with a descriptor that is not a TCP connection", id);
    return;
  }
  in.fd.reset();
  if (sessions_.size() >= kMaxSessions) {
    log::warn("session %016llx: %zu sessions remembered already; it may not relay", id,
              sessions_.size());
    return;
  }
  sessions_[m.session] = VerifiedSession{.client_address = inet::address_text(peer),
                                         .local_address = inet::endpoint_text(local),
                                         .listener = m.listener,
                                         .auth_user = ""};
  runtime_.counters()["sessions"] = sessions_.size();
}

void LookupProcess::close_session(uint64_t id) {
  sessions_.erase(id);
  runtime_.counters()["sessions"] = sessions_.size();
}

void LookupProcess::forget_sessions() {
  sessions_.clear();
  runtime_.counters()["sessions"] = 0;
}

bool LookupProcess::trusted(const sockaddr* client) const {
  return std::any_of(trusted_.begin(), trusted_.end(),
                     [client](const inet::Network& n) { return n.contains(client); });
}

bool LookupProcess::relays_anywhere(const VerifiedSession& session) const {
  if (!session.auth_user.empty()) return true;
  if (!trusted_relay_) return false;
  const std::optional<sockaddr_storage> client = inet::parse_ip_address(session.client_address);
  return client && trusted(reinterpret_cast<const sockaddr*>(&*client));
}

void LookupProcess::check_relay(msg::Incoming& in, const msg::RelayCheck& m) {
  const VerifiedSession* s = find_session(m.session);
  msg::RelayVerdict verdict{.allowed = false, .temporary = false, .reason = ""};
  const auto not_relayed = [this, s](const std::string& domain) {
    return !relays_anywhere(*s) && !relay_domains_.covers(domain);
  };
  if (s == nullptr) {
    verdict.temporary = true;
    verdict.reason = "the session is unknown to lookup";
  } else if (s->client_address != m.client_address) {
    verdict.reason =
        "client [" + m.client_address + "] is not the session's [" + s->client_address + "]";
  } else if (s->listener != m.listener) {
    verdict.reason = "listener " + m.listener + " is not the session's " + s->listener;
  } else if (s->auth_user != m.auth_user) {
    verdict.reason = s->auth_user.empty()
                         ? "the session did not authenticate"
                         : "the session authenticated as " + s->auth_user + ", not " + m.auth_user;
  } else if (auto domain = std::find_if(m.domains.begin(), m.domains.end(), not_relayed);
             domain != m.domains.end()) {
    verdict.reason = "no relaying to " + *domain + " for this session";
  } else if (const auto refusal =
                 s->auth_user.empty() ? std::nullopt : senders_.refusal(s->auth_user, m.sender)) {
    verdict.reason = *refusal;
    verdict.temporary = senders_.table_missing();
    if (verdict.temporary) verdict.reason += " (the senders table is not loaded)";
  } else {
    verdict.allowed = true;
  }
  if (!verdict.allowed) {
    const std::string first = m.domains.empty() ? std::string("?") : m.domains.front();
    log::warn("relay to %s%s refused for session %016llx (client [%s] at %s): %s", first.c_str(),
              m.domains.size() > 1 ? " and others" : "", static_cast<unsigned long long>(m.session),
              s ? s->client_address.c_str() : "?", s ? s->local_address.c_str() : "?",
              verdict.reason.c_str());
  }
  answer(in, verdict);
}

void LookupProcess::check_sender(msg::Incoming& in, const msg::SenderCheck& m) {
  const VerifiedSession* s = find_session(m.session);
  msg::SenderVerdict verdict{.allowed = false, .temporary = false, .reason = ""};
  if (s == nullptr) {
    verdict.temporary = true;
    verdict.reason = "the session is unknown to lookup";
  } else if (s->auth_user.empty()) {
    verdict.reason = "the session did not authenticate";
  } else if (auto refusal = senders_.refusal(s->auth_user, m.sender)) {
    verdict.reason = std::move(*refusal);
    verdict.temporary = senders_.table_missing();
  } else {
    verdict.allowed = true;
  }
  answer(in, verdict);
}

void LookupProcess::check_client(msg::Incoming& in, const msg::ClientCheck& m) {
  const std::optional<sockaddr_storage> address = inet::parse_ip_address(m.address);
  if (!address) {
    log::warn("client check for a bad address '%s'", m.address.c_str());
    answer(in, msg::ClientVerdict{});
    return;
  }
  const sockaddr* client = reinterpret_cast<const sockaddr*>(&*address);
  uint32_t delay_ms = 0;
  if (!trusted(client)) {
    const auto [rate, wait] = connection_rate_.connect(client_key(m.address), Clock::now());
    if (rate == ThrottleVerdict::refuse) {
      ++clients_rate_refused_;
      log::info("client %s: connects too often (%.0f a minute); refused", m.address.c_str(),
                connection_rate_.rate(client_key(m.address), Clock::now()));
      answer(in, msg::ClientVerdict{
                     .refuse = true,
                     .reply = "421 4.7.0 Too many connections from your address, try later",
                     .verified_name = "",
                     .header = "",
                     .delay_ms = 0});
      return;
    }
    if (rate == ThrottleVerdict::delay) {
      ++clients_rate_delayed_;
      delay_ms = static_cast<uint32_t>(wait.count());
    }
  }
  auto listener = checks_.find(m.listener);
  if (!resolver_ || listener == checks_.end()) {
    answer(
        in,
        msg::ClientVerdict{
            .refuse = false, .reply = "", .verified_name = "", .header = "", .delay_ms = delay_ms});
    return;
  }
  const uint64_t id = next_check_++;
  auto flight = std::make_unique<CheckInFlight>();
  flight->checks = listener->second;
  flight->request_id = in.request_id;
  flight->started = Clock::now();
  flight->delay_ms = delay_ms;
  CheckInFlight& f = *flight;
  in_flight_[id] = std::move(flight);
  f.check =
      std::make_unique<ClientCheck>(runtime_.base(), *resolver_, f.checks, trusted_, client,
                                    [this, id](ClientVerdict v) { checked(id, std::move(v)); });
}

void LookupProcess::checked(uint64_t id, ClientVerdict v) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  const uint32_t request = it->second->request_id;
  const uint32_t delay_ms = it->second->delay_ms;
  if (!v.trusted) {
    client_latency_.add(it->second->started);
    ++(v.refuse ? clients_refused_ : !v.header.empty() ? clients_tagged_ : clients_passed_);
    if (!v.log.empty()) log::info("%s", v.log.c_str());
    // A DNS failure decided the check (fail-open): the admin looks for these.
    for (const ClientVerdict::DnsFailure& f : v.dns_failures) {
      log::Line line;
      line.add("event", "dns_failure").add("check", f.check);
      if (!f.zone.empty()) line.add("zone", f.zone);
      line.add("client", v.client).add("reason", f.reason).add("action", "fail-open").warn();
    }
  }
  in_flight_.erase(it);  // the ClientCheck whose callback this is: nothing after touches it
  ipc::Channel* smtp = runtime_.peer(Role::smtp);
  const msg::ClientVerdict verdict{.refuse = v.refuse,
                                   .reply = std::move(v.reply),
                                   .verified_name = std::move(v.verified_name).value_or(""),
                                   .header = std::move(v.header),
                                   .delay_ms = delay_ms};
  if (smtp == nullptr || !msg::send(*smtp, verdict, request)) log::warn("cannot answer smtp");
}

void LookupProcess::find_mx(msg::Incoming& in, const msg::MxQuery& m) {
  if (!resolver_) {
    answer(in, msg::MxAnswer{.status = msg::MxStatus::temporary,
                             .implicit = false,
                             .hosts = {},
                             .error = "DNS unavailable"});
    return;
  }
  const uint32_t request = in.request_id;
  const Role asker = in.from;
  if (m.host) {
    resolver_->addresses(m.domain, [this, request, asker, name = m.domain](
                                       dns::Status status, std::vector<std::string> addresses) {
      dns::MxRoute route{.status = status,
                         .implicit = true,
                         .null_mx = false,
                         .hosts = {},
                         .error = status == dns::Status::ok ? "" : dns::to_string(status)};
      if (status == dns::Status::ok) route.hosts.push_back({0, name, std::move(addresses)});
      answer_mx(asker, request, std::move(route));
    });
    return;
  }
  resolver_->mx(m.domain, [this, request, asker, started = Clock::now()](dns::MxRoute route) {
    mx_latency_.add(started);
    answer_mx(asker, request, std::move(route));
  });
}

void LookupProcess::answer_mx(Role asker, uint32_t request, dns::MxRoute route) {
  msg::MxAnswer a{
      .status = mx_status(route), .implicit = route.implicit, .hosts = {}, .error = route.error};
  for (auto& h : route.hosts)
    a.hosts.push_back({h.preference, std::move(h.name), std::move(h.addresses)});
  ipc::Channel* channel = runtime_.peer(asker);
  if (channel == nullptr || !msg::send(*channel, a, request)) log::warn("cannot answer mta");
}

// The latency histograms for metrics (control/metrics_text.cpp): NAME:le_LE, NAME:sum_us and
// NAME:count, refreshed for each status answer.
void LookupProcess::count_latencies() {
  auto& c = runtime_.counters();
  auto put = [&c](const std::string& name, uint64_t count, uint64_t total_us,
                  std::span<const uint64_t> buckets) {
    for (size_t i = 0; i < dns::kLatencyBoundNames.size(); ++i)
      c[name + ":le_" + dns::kLatencyBoundNames[i]] = buckets[i];
    c[name + ":sum_us"] = total_us;
    c[name + ":count"] = count;
  };
  put("mx", mx_latency_.count, mx_latency_.total_us, mx_latency_.buckets);
  put("client", client_latency_.count, client_latency_.total_us, client_latency_.buckets);
  if (resolver_) {
    const dns::Resolver::Stats st = resolver_->stats();
    put("dns", st.answers, st.answer_total_us, st.answer_buckets);
  }
}

void LookupProcess::show_stats(msg::Incoming& in) {
  std::string text;
  auto line = [&text](const char* what, const std::string& value) {
    text += std::string(what) + ": " + value + "\n";
  };
  line("recipient checks", std::to_string(rcpt_checks_) + " (" + std::to_string(rcpt_known_) +
                               " local users found, " + std::to_string(rcpt_unknown_) +
                               " unknown)");
  line("client checks", client_latency_.to_string() + "; " + std::to_string(clients_passed_) +
                            " passed, " + std::to_string(clients_tagged_) + " tagged, " +
                            std::to_string(clients_refused_) + " refused");
  line("connection rate", std::to_string(clients_rate_delayed_) + " greetings delayed, " +
                              std::to_string(clients_rate_refused_) + " clients refused, " +
                              std::to_string(connection_rate_.size()) + " addresses counted");
  const SystemUsers& accounts = router_.system_users();
  line("system users", std::to_string(accounts.hits()) + " cache hits, " +
                           std::to_string(accounts.misses()) + " misses, " +
                           std::to_string(accounts.size()) + " cached");
  line("mx lookups", mx_latency_.to_string());
  if (resolver_) {
    const dns::Resolver::Stats st = resolver_->stats();
    const Latency answers{st.answers, st.answer_total_us, st.answer_max_us};
    line("dns questions", std::to_string(st.queries) + " asked, " + std::to_string(st.answers) +
                              " answered (" + std::to_string(st.cached) + " from the cache, " +
                              std::to_string(st.answers - st.cached) + " asked of a server; " +
                              answers.times() + "), " + std::to_string(st.timeouts) +
                              " timed out, " + std::to_string(st.failures) + " failed, " +
                              std::to_string(resolver_->in_flight()) + " in flight");
  } else {
    line("dns questions", "no resolver");
  }
  line("auth failures", std::to_string(auth_failures_));
  ipc::Channel* control = runtime_.peer(Role::control);
  if (control == nullptr ||
      !msg::send(*control, msg::CtlResult{.ok = true, .text = text}, in.request_id))
    log::warn("cannot answer control");
}

Status LookupProcess::load_routing_table(msg::TableKind kind, const std::string& name, int fd) {
  Result<std::string> read = read_all(fd, kMaxTableBytes);
  // The parent opened the file: its owner comes with the descriptor.
  struct stat st {};
  const uid_t owner = fstat(fd, &st) == 0 ? st.st_uid : 0;
  Status loaded = read.ok() ? router_.load(kind, name, read.value(), owner) : Status(read.error());
  if (!loaded.ok()) {
    log_table_refused(kind, name, loaded.error().message);
    return loaded;
  }
  log_table_loaded(kind, name, router_.table_size(kind, name));
  return ok_status();
}

Status LookupProcess::load_credentials(const std::string& name, int fd) {
  Result<std::string> read = read_all(fd, kMaxTableBytes);
  if (!read.ok()) {
    log_table_refused(msg::TableKind::credentials, name, read.error().message);
    return read.error();
  }
  std::string& text = read.value();
  auto table = CredentialTable::parse(text, name);
  explicit_bzero(text.data(), text.size());
  if (!table.ok()) {
    for (const auto& e : table.error()) log::error("%s", e.to_string().c_str());
    const std::string first =
        table.error().empty() ? name + ": refused" : table.error().front().to_string();
    log_table_refused(msg::TableKind::credentials, name, first);
    if (!credentials_) log::error("credentials %s refused; AUTH is unavailable", name.c_str());
    return make_error(first);
  }
  credentials_ = std::make_shared<const CredentialTable>(std::move(table).value());
  runtime_.counters()["credentials"] = credentials_->size();
  log_table_loaded(msg::TableKind::credentials, name, credentials_->size());
  return ok_status();
}

Status LookupProcess::load_senders(const std::string& name, int fd) {
  Result<std::string> read = read_all(fd, kMaxTableBytes);
  auto table = read.ok()
                   ? SenderTable::parse(read.value(), name)
                   : Result<SenderTable, TableError>(TableError{name, 0, read.error().message});
  if (!table.ok()) {
    log_table_refused(msg::TableKind::senders, name, table.error().to_string());
    return make_error(table.error().to_string());
  }
  senders_.load(std::move(table).value());
  runtime_.counters()["senders"] = senders_.table_size();
  log_table_loaded(msg::TableKind::senders, name, senders_.table_size());
  return ok_status();
}

void LookupProcess::refuse_throttled(Role asker, uint32_t request_id, const std::string& client,
                                     const std::string& user) {
  // The name is the client's choice: printable ASCII of a sane length, or nothing of it.
  const bool printable = user.size() <= 64 && std::all_of(user.begin(), user.end(), [](char c) {
                           return c > 0x20 && c < 0x7f;
                         });
  log::info("auth: too many failures from [%s] (for %s); refused", client.c_str(),
            printable ? user.c_str() : "an unprintable name");
  answer(asker, request_id,
         msg::AuthVerdict{.outcome = msg::AuthOutcome::throttled, .delay_ms = 0});
}

void LookupProcess::check_credentials(msg::Incoming& in, const msg::AuthCheck& m) {
  if (!credentials_) {
    answer(in, msg::AuthVerdict{.outcome = msg::AuthOutcome::unavailable, .delay_ms = 0});
    return;
  }
  // The address counted is the one lookup read from the session's socket itself when it
  // knows the session: a compromised smtp cannot spread its guesses over made-up addresses.
  const auto session = sessions_.find(m.session);
  const std::string& client =
      session != sessions_.end() ? session->second.client_address : m.client_address;
  const auto [verdict, wait] = auth_throttle_.before_check(client, m.user, Clock::now());
  if (verdict == ThrottleVerdict::refuse ||
      (verdict == ThrottleVerdict::delay && held_checks_.size() >= kMaxHeldChecks)) {
    refuse_throttled(in.from, in.request_id, client, m.user);
    return;
  }
  auto job = std::make_unique<PasswordCheck>();
  job->table = credentials_;
  job->user = m.user;
  job->password = m.password;
  job->client_address = client;
  job->asker = in.from;
  job->request_id = in.request_id;
  job->session = m.session;
  if (verdict == ThrottleVerdict::allow) {
    password_checks_.post(std::move(job));
    return;
  }
  held_checks_.emplace(Clock::now() + wait, std::move(job));
  arm_release();
}

void LookupProcess::release_held_checks() {
  const auto now = Clock::now();
  while (!held_checks_.empty() && held_checks_.begin()->first <= now) {
    password_checks_.post(std::move(held_checks_.begin()->second));
    held_checks_.erase(held_checks_.begin());
  }
  arm_release();
}

void LookupProcess::arm_release() {
  if (held_checks_.empty()) return;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(held_checks_.begin()->first - Clock::now());
  release_timer_.arm(std::max(left, std::chrono::milliseconds{0}));
}

void LookupProcess::verify_passwords(std::vector<std::unique_ptr<PasswordCheck>>& batch) {
  for (auto& job : batch) {
    job->accepted = job->table->verify(job->user, job->password);
    explicit_bzero(job->password.data(), job->password.size());
  }
}

void LookupProcess::password_checked(PasswordCheck& job) {
  const auto now = Clock::now();
  if (job.accepted) {
    if (auth_throttle_.right_password(job.client_address, job.user, now).first ==
        ThrottleVerdict::refuse) {
      refuse_throttled(job.asker, job.request_id, job.client_address, job.user);
      return;
    }
    if (auto it = sessions_.find(job.session); it != sessions_.end())
      it->second.auth_user = job.user;
    answer(job.asker, job.request_id,
           msg::AuthVerdict{.outcome = msg::AuthOutcome::accepted, .delay_ms = 0});
    return;
  }
  runtime_.counters()["auth_failures"] = ++auth_failures_;
  if (auth_throttle_.wrong_password(job.client_address, job.user, now).first ==
      ThrottleVerdict::refuse) {
    refuse_throttled(job.asker, job.request_id, job.client_address, job.user);
    return;
  }
  answer(job.asker, job.request_id,
         msg::AuthVerdict{.outcome = msg::AuthOutcome::rejected,
                          .delay_ms = static_cast<uint32_t>(kFailureDelay.count())});
}

}  // namespace postern::lookup
