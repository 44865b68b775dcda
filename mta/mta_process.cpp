// The mta process core; see mta_process.hpp.
#include "mta/mta_process.hpp"

#include <cstdio>

#include "common/util/ascii.hpp"
#include "common/util/inet.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "mta/loops.hpp"

namespace postern::mta {
namespace {

// A report's frames stay under the IPC payload bound (ipc::kMaxPayload) with room to spare: a
// thousand recipients' replies do not fit one.
constexpr size_t kReportFrameBudget = 48 * 1024;
// Results of a job still under way go to the queue once this many have gathered: a message to
// many rate-limited domains is done only when its slowest is, and would otherwise hold every
// result until then (tests/bench/campaign.py: 1,000 such messages of 100 recipients).
constexpr size_t kEagerResults = 32;
constexpr std::string_view kRouteKeyPrefix = "route ";

const char* status_text(msg::MxStatus status) {
  switch (status) {
    case msg::MxStatus::ok:
      return "ok";
    case msg::MxStatus::no_domain:
      return "the domain does not exist (permanent)";
    case msg::MxStatus::null_mx:
      return "the domain accepts no mail: null MX (permanent)";
    case msg::MxStatus::no_address:
      return "no host of the domain has an address (permanent)";
    case msg::MxStatus::temporary:
      return "temporary DNS failure";
  }
  return "?";
}

// One line per host, in the order mta would try them: preference, name, addresses.
std::string describe(const std::string& domain, const msg::MxAnswer& a) {
  std::string text = domain + ": " + status_text(a.status);
  if (a.implicit) text += " (no MX records: the domain's own addresses)";
  if (!a.error.empty()) text += "; " + a.error;
  text += "\n";
  for (const auto& h : a.hosts) {
    char head[32];
    std::snprintf(head, sizeof head, "%5u  ", static_cast<unsigned>(h.preference));
    text += head + h.name;
    for (const auto& address : h.addresses) text += " " + address;
    text += "\n";
  }
  return text;
}

Resolution failure(Resolution::Kind kind, std::string dsn, std::string detail) {
  return Resolution{
      .kind = kind, .targets = {}, .dsn = std::move(dsn), .detail = std::move(detail)};
}

std::string domain_of(const std::string& address) {
  const size_t at = address.rfind('@');
  if (at == std::string::npos) return {};
  std::string domain = ascii::lower(std::string_view(address).substr(at + 1));
  if (domain.ends_with('.')) domain.pop_back();
  return domain;
}

}  // namespace

const Route* matching_route(const std::vector<Route>& routes, const std::string& domain) {
  for (const Route& route : routes)
    for (const std::string& pattern : route.match)
      if (mail::domain_matches(pattern, domain)) return &route;
  return nullptr;
}

std::string destination_key(const std::vector<Route>& routes, const std::string& domain) {
  const Route* route = matching_route(routes, domain);
  if (route == nullptr || route->via.empty()) return domain;
  return std::string(kRouteKeyPrefix) + std::to_string(route - routes.data()) + " (" +
         route->match.front() + ")";
}

mail::TlsPolicy tls_policy(const Settings& settings, const Route* route, mail::RelayScheme scheme) {
  if (route != nullptr && route->tls) return *route->tls;
  if (scheme == mail::RelayScheme::smtp_tls || scheme == mail::RelayScheme::smtps)
    return mail::TlsPolicy::encrypt;
  return settings.tls_policy;
}

std::optional<size_t> route_of(const std::string& key) {
  if (!key.starts_with(kRouteKeyPrefix)) return std::nullopt;
  size_t index = 0;
  for (size_t i = kRouteKeyPrefix.size(); i < key.size() && key[i] >= '0' && key[i] <= '9'; ++i)
    index = index * 10 + static_cast<size_t>(key[i] - '0');
  return index;
}

MtaProcess::MtaProcess(ChildRuntime& runtime) : runtime_(runtime) {
  relay_ = std::make_unique<Relay>(
      runtime_.base(),
      [this](const std::string& key, std::function<void(Resolution)> done) {
        resolve(key, std::move(done));
      },
      [this](Job& job, size_t recipient, msg::DeliveryResult result) {
        report(job, recipient, std::move(result));
      });
  auto& d = runtime_.dispatcher();
  d.on<Settings>([this](msg::Incoming&, Settings&& m) { configure(std::move(m)); });
  d.on<CaFile>([this](msg::Incoming& in, CaFile&& m) { load_ca(in, m); });
  d.on<msg::DeliverRemote>(
      [this](msg::Incoming& in, msg::DeliverRemote&& m) { accept(in, std::move(m)); });
  d.on<msg::CtlShowMx>([this](msg::Incoming& in, msg::CtlShowMx&& m) { show_mx(in, m); });
  d.on<msg::MxAnswer>([this](msg::Incoming& in, msg::MxAnswer&& m) { on_answer(in, m); });
  d.on<msg::CtlShowRelays>([this](msg::Incoming& in, msg::CtlShowRelays&& m) {
    std::string text;
    switch (m.view) {
      case msg::RelayView::relays:
        text = relay_->describe();
        if (text.empty()) text = "no destination has connections or waiting deliveries\n";
        break;
      case msg::RelayView::hosts:
        text = relay_->describe_hosts();
        if (text.empty()) text = "no server has been connected to\n";
        break;
      case msg::RelayView::routes:
        text = describe_routes();
        break;
    }
    answer_control(in.request_id, true, text);
  });
  runtime_.on_peer_lost([this](Role peer) {
    if (peer == Role::lookup) lookup_lost();
    if (peer == Role::queue) {
      // Its successor hands out every message again: what has not gone out yet is dropped
      // rather than sent twice; what is on a connection finishes, its report unanswered.
      relay_->drop_waiting();
      jobs_.clear();
      gathering_.clear();
    }
  });
  runtime_.counters()["sent"] = 0;
  runtime_.counters()["deferred"] = 0;
  runtime_.counters()["bounced"] = 0;
  runtime_.counters()["sent_tls"] = 0;
  runtime_.counters()["sent_plain"] = 0;
}

void MtaProcess::configure(Settings&& settings) {
  settings_ = std::move(settings);
  relay_->configure(settings_);
}

// The parent's descriptor of the CA file: read whole, bounded, then closed.
void MtaProcess::load_ca(msg::Incoming& in, const CaFile& m) {
  const UniqueFd fd = std::move(in.fd);
  Result<std::string> pem = read_all(fd.get(), kMaxCaFileSize);
  if (!pem.ok()) {
    log::error("CA certificates %s: %s", m.name.c_str(), pem.error().message.c_str());
    relay_->set_ca({}, m.name);
    return;
  }
  relay_->set_ca(pem.value(), m.name);
}

// --- jobs -----------------------------------------------------------------------------------

// A message's recipients may come in several frames (DeliverRemote::more): they gather into
// one job, started with the last. A frame that does not fit the one gathering under its
// request id (another message, or too many recipients) starts what gathered as it is.
void MtaProcess::accept(msg::Incoming& in, msg::DeliverRemote&& m) {
  const bool more = m.more;
  std::shared_ptr<Job> job;
  if (const auto it = gathering_.find(in.request_id); it != gathering_.end()) {
    job = it->second;
    gathering_.erase(it);
    std::vector<msg::RemoteRecipient>& have = job->message.recipients;
    if (job->message.envelope.id == m.envelope.id &&
        have.size() + m.recipients.size() <= kMaxRecipients) {
      have.insert(have.end(), std::make_move_iterator(m.recipients.begin()),
                  std::make_move_iterator(m.recipients.end()));
    } else {
      log::error(
          "%s: the queue's next frame for it is for %s, or brings more than %zu "
          "recipients; delivering the %zu it has",
          job->message.envelope.id.c_str(), m.envelope.id.c_str(), kMaxRecipients, have.size());
      start(job);
      job = nullptr;
    }
  }
  if (!job) {
    job = std::make_shared<Job>();
    job->id = next_job_++;
    job->request_id = in.request_id;
    job->message = std::move(m);
    job->fd = std::move(in.fd);
  }
  if (more)
    gathering_[in.request_id] = std::move(job);
  else
    start(job);
}

void MtaProcess::start(const std::shared_ptr<Job>& job) {
  job->message.more = false;
  job->reported.resize(job->message.recipients.size());
  job->open = job->message.recipients.size();
  jobs_[job->id] = job;
  Job& j = *job;
  const size_t n = j.message.recipients.size();

  // RFC 5321 6.3: a message that went round too often is a loop; it bounces rather than
  // going round again.
  const Result<uint32_t> hops = count_received(j.data());
  if (!hops.ok() || hops.value() > settings_.hop_count) {
    for (size_t k = 0; k < n; ++k) {
      msg::DeliveryResult r;
      if (!hops.ok()) {
        r.outcome = msg::DeliveryOutcome::temporary_failure;
        r.dsn = "4.3.0";
        r.detail = "cannot read the message: " + hops.error().message;
      } else {
        r.outcome = msg::DeliveryOutcome::permanent_failure;
        r.dsn = "5.4.6";
        r.detail = "mail loop: " + std::to_string(hops.value()) +
                   " Received: headers, more than the limit of " +
                   std::to_string(settings_.hop_count);
      }
      report(j, k, std::move(r));
    }
    return;
  }
  // One delivery per destination, with every recipient the message has there.
  std::vector<std::pair<std::string, Delivery>> deliveries;
  std::map<std::string, size_t> index;
  for (size_t k = 0; k < n; ++k) {
    const std::string domain = domain_of(j.message.recipients[k].address);
    if (domain.empty()) {
      report(j, k,
             {.index = 0,
              .outcome = msg::DeliveryOutcome::permanent_failure,
              .dsn = "5.1.3",
              .detail = "no domain in the recipient's address",
              .forward = {},
              .expanded = false,
              .remote_mta = {},
              .retry_after = 0,
              .tls = {},
              .source = {},
              .relayed = false,
              .wait_ms = 0,
              .setup_ms = 0,
              .transfer_ms = 0});
      continue;
    }
    const std::string key = destination_key(settings_.routes, domain);
    auto [it, fresh] = index.emplace(key, deliveries.size());
    if (fresh) deliveries.emplace_back(key, Delivery{job, {}, false, {}, {}});
    deliveries[it->second].second.recipients.push_back(k);
  }
  for (auto& [key, delivery] : deliveries) relay_->submit(key, std::move(delivery));
}

void MtaProcess::report(Job& job, size_t recipient, msg::DeliveryResult result) {
  if (recipient >= job.reported.size() || job.reported[recipient]) return;
  job.reported[recipient] = true;
  const msg::RemoteRecipient& r = job.message.recipients[recipient];
  result.index = r.index;
  // The queue logs each result (one line per recipient, delay since arrival); this one, with
  // the time mta took, is for verbose logs.
  const double delay = std::chrono::duration<double>(Clock::now() - job.started).count();
  log::debug("%s: to=<%s>, relay=%s, in mta %.2f s, dsn=%s, status=%s (%s)",
             job.message.envelope.id.c_str(), r.address.c_str(),
             result.remote_mta.empty() ? "none" : result.remote_mta.c_str(), delay,
             result.dsn.c_str(), msg::status_word(result.outcome), result.detail.c_str());
  ++runtime_.counters()[msg::status_word(result.outcome)];
  // Metrics: results per destination domain (bounded, see count_labeled) and TLS use.
  const std::string_view domain = std::string_view(r.address).substr(r.address.rfind('@') + 1);
  runtime_.count_labeled(std::string("relay_") + msg::status_word(result.outcome),
                         ascii::lower(domain));
  if (result.outcome == msg::DeliveryOutcome::delivered)
    ++runtime_.counters()[result.tls.empty() ? "sent_plain" : "sent_tls"];
  job.unsent_bytes += report_size(result);
  job.unsent.push_back(std::move(result));
  if (--job.open == 0)
    finish(job);
  else if ((job.unsent.size() >= kEagerResults || job.unsent_bytes >= kReportFrameBudget) &&
           jobs_.contains(job.id))  // (not for a queue that went away: its successor resends)
    send_results(job, false);
}

size_t MtaProcess::report_size(const msg::DeliveryResult& r) {
  return 64 + r.dsn.size() + r.detail.size() + r.remote_mta.size() + r.tls.size() + r.source.size();
}

bool MtaProcess::send_results(Job& job, bool last) {
  ipc::Channel* queue = runtime_.peer(Role::queue);
  msg::DeliveryReport frame{.id = job.message.envelope.id, .results = {}, .last = false};
  size_t bytes = 0;
  bool sent = queue != nullptr;
  for (msg::DeliveryResult& r : job.unsent) {
    const size_t size = report_size(r);
    if (bytes + size > kReportFrameBudget && !frame.results.empty()) {
      sent = sent && msg::send(*queue, frame, job.request_id);
      frame.results.clear();
      bytes = 0;
    }
    frame.results.push_back(std::move(r));
    bytes += size;
  }
  job.unsent.clear();
  job.unsent.shrink_to_fit();
  job.unsent_bytes = 0;
  frame.last = last;
  if (!frame.results.empty() || last) sent = sent && msg::send(*queue, frame, job.request_id);
  if (!sent) log::warn("%s: cannot report deliveries to the queue", frame.id.c_str());
  return sent;
}

void MtaProcess::finish(Job& job) {
  const uint64_t id = job.id;
  const auto it = jobs_.find(id);
  if (it == jobs_.end()) return;  // its queue went away
  const std::shared_ptr<Job> keep = it->second;
  jobs_.erase(it);
  send_results(job, true);
}

// --- where mail goes ------------------------------------------------------------------------

void MtaProcess::resolve(const std::string& key, std::function<void(Resolution)> done) {
  if (const auto route = route_of(key)) {
    if (*route < settings_.routes.size())
      return resolve_route(settings_.routes[*route], key, std::move(done));
    // The configuration changed under a waiting delivery: its domain goes by MX now.
    return done(failure(Resolution::Kind::temporary, "4.3.5", "the route changed; try again"));
  }
  if (key.starts_with('[')) return done(resolve_literal(key));
  resolve_mx(key, done);
}

// RFC 5321 4.1.3 and 5.1: a domain written as an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]") is that host, on port 25, with no lookup.
Resolution MtaProcess::resolve_literal(const std::string& domain) const {
  std::string_view text(domain);
  if (!text.ends_with(']'))
    return failure(Resolution::Kind::permanent, "5.1.2", "bad address literal " + domain);
  text = text.substr(1, text.size() - 2);
  // IPv4 bare, IPv6 only with its tag.
  const bool tagged = ascii::lower(text.substr(0, 5)) == "ipv6:";
  if (tagged) text.remove_prefix(5);
  const std::string address(text);
  const auto parsed = inet::parse_ip_address(address);
  if (!parsed || parsed->ss_family != (tagged ? AF_INET6 : AF_INET))
    return failure(Resolution::Kind::permanent, "5.1.2", "bad address literal " + domain);
  if (is_local(settings_.local_addresses, address, 25))
    return failure(Resolution::Kind::permanent, "5.4.6",
                   "mail for " + domain + " loops back to myself");
  Resolution r{.kind = Resolution::Kind::ok, .targets = {}, .dsn = {}, .detail = {}};
  r.targets.push_back(Target{.host = address,
                             .address = address,
                             .port = 25,
                             .scheme = mail::RelayScheme::smtp,
                             .tls = tls_policy(settings_, nullptr, mail::RelayScheme::smtp),
                             .preference = 0,
                             .auth = nullptr});
  return r;
}

void MtaProcess::resolve_route(const Route& route, const std::string& key,
                               std::function<void(Resolution)> done) {
  // The servers' addresses in the route's order; names are asked of lookup in parallel.
  struct Gathering {
    std::vector<std::vector<Target>> per_hop;
    size_t pending = 0;
    std::string problems;  // why hops gave nothing, for a route with none left
    bool loops = false;
    std::function<void(Resolution)> done;
  };
  auto g = std::make_shared<Gathering>();
  g->per_hop.resize(route.via.size());
  g->done = std::move(done);
  auto note = [g](const std::string& problem) {
    if (!g->problems.empty()) g->problems += "; ";
    g->problems += problem;
  };
  auto complete = [g, key, source = route.source] {
    Resolution r{
        .kind = Resolution::Kind::ok, .targets = {}, .dsn = {}, .detail = {}, .source = source};
    for (auto& hop : g->per_hop)
      for (auto& t : hop)
        if (r.targets.size() < kMaxTargets) r.targets.push_back(std::move(t));
    if (r.targets.empty()) {
      r = g->loops && g->problems.empty()
              ? failure(Resolution::Kind::permanent, "5.4.6",
                        "mail for " + key + " loops back to myself")
              : failure(Resolution::Kind::temporary, g->loops ? "5.4.6" : "4.4.3",
                        g->problems.empty() ? "no server to send to" : g->problems);
      if (r.kind == Resolution::Kind::temporary && r.dsn == "5.4.6") r.dsn = "4.4.6";
    }
    g->done(std::move(r));
  };
  // (Copied: the answers come later, and a reload may replace the routes meanwhile.)
  const std::optional<mail::TlsPolicy> route_tls = route.tls;
  std::shared_ptr<const mail::ClientOptions::Credentials> auth;
  if (!route.auth_login.empty())
    auth = std::make_shared<const mail::ClientOptions::Credentials>(
        mail::ClientOptions::Credentials{route.auth_login, route.auth_password});
  auto add = [this, g, route_tls, auth](size_t i, const mail::RelayHop& hop,
                                        const std::string& name,
                                        const std::vector<std::string>& addresses) {
    for (const std::string& address : addresses) {
      if (!inet::parse_ip_address(address)) continue;
      if (is_local(settings_.local_addresses, address, hop.port)) {
        g->loops = true;
        continue;
      }
      g->per_hop[i].push_back(
          Target{.host = name,
                 .address = address,
                 .port = hop.port,
                 .scheme = hop.scheme,
                 .tls = route_tls.value_or(tls_policy(settings_, nullptr, hop.scheme)),
                 .preference = static_cast<uint32_t>(i),
                 .auth = auth});
    }
  };
  for (size_t i = 0; i < route.via.size(); ++i) {
    const mail::RelayHop& hop = route.via[i];
    if (hop.literal) {
      add(i, hop, hop.host, {hop.host});
      continue;
    }
    ++g->pending;
    const bool asked =
        ask_lookup(msg::MxQuery{.domain = hop.host, .host = true},
                   Asked{.domain = hop.host,
                         .control_request = 0,
                         .answered = [g, i, hop, add, note, complete](const msg::MxAnswer& a) {
                           if (a.status == msg::MxStatus::ok && !a.hosts.empty())
                             add(i, hop, hop.host, a.hosts.front().addresses);
                           else
                             note(hop.host + ": " + status_text(a.status) +
                                  (a.error.empty() ? "" : " (" + a.error + ")"));
                           if (--g->pending == 0) complete();
                         }});
    if (!asked) {
      --g->pending;
      note(hop.host + ": lookup is not answering");
    }
  }
  if (g->pending == 0) complete();
}

void MtaProcess::resolve_mx(const std::string& domain,
                            const std::function<void(Resolution)>& done) {
  auto answered = [this, domain, done](const msg::MxAnswer& a) {
    switch (a.status) {
      case msg::MxStatus::null_mx:
        return done(
            failure(Resolution::Kind::permanent, "5.1.10", domain + " accepts no mail (null MX)"));
      case msg::MxStatus::no_domain:
        return done(
            failure(Resolution::Kind::permanent, "5.1.2", "domain " + domain + " does not exist"));
      case msg::MxStatus::no_address:
        return done(failure(Resolution::Kind::permanent, "5.4.4",
                            "no mail host of " + domain + " has an address"));
      case msg::MxStatus::temporary:
        return done(failure(
            Resolution::Kind::temporary, "4.4.3",
            "cannot find the mail hosts of " + domain + (a.error.empty() ? "" : ": " + a.error)));
      case msg::MxStatus::ok:
        break;
    }
    std::vector<msg::MxHost> hosts = a.hosts;
    if (drop_self(hosts, settings_.hostname, settings_.local_addresses) && hosts.empty())
      return done(failure(Resolution::Kind::permanent, "5.4.6",
                          "mail for " + domain + " loops back to myself (MX)"));
    const Route* route = matching_route(settings_.routes, domain);
    Resolution r{.kind = Resolution::Kind::ok,
                 .targets = {},
                 .dsn = {},
                 .detail = {},
                 .source = route != nullptr ? route->source : std::vector<std::string>{}};
    const mail::TlsPolicy tls = tls_policy(settings_, route, mail::RelayScheme::smtp);
    for (const msg::MxHost& h : hosts)
      for (const std::string& address : h.addresses)
        if (r.targets.size() < kMaxTargets && inet::parse_ip_address(address))
          r.targets.push_back(Target{.host = h.name,
                                     .address = address,
                                     .port = 25,
                                     .scheme = mail::RelayScheme::smtp,
                                     .tls = tls,
                                     .preference = h.preference,
                                     .auth = nullptr});
    done(std::move(r));
  };
  if (!ask_lookup(msg::MxQuery{.domain = domain, .host = false},
                  Asked{.domain = domain, .control_request = 0, .answered = answered}))
    answered(msg::MxAnswer{.status = msg::MxStatus::temporary,
                           .implicit = false,
                           .hosts = {},
                           .error = "lookup is not answering"});
}

bool MtaProcess::ask_lookup(const msg::MxQuery& query, Asked asked) {
  ipc::Channel* lookup = runtime_.peer(Role::lookup);
  const uint32_t request = next_request_++;
  if (lookup == nullptr || !msg::send(*lookup, query, request)) return false;
  asking_[request] = std::move(asked);
  return true;
}

void MtaProcess::lookup_lost() {
  std::map<uint32_t, Asked> asked = std::move(asking_);
  asking_.clear();
  for (auto& [request, a] : asked) {
    if (a.answered)
      a.answered(msg::MxAnswer{.status = msg::MxStatus::temporary,
                               .implicit = false,
                               .hosts = {},
                               .error = "lookup went away"});
    else
      answer_control(a.control_request, false, a.domain + ": lookup went away");
  }
}

// --- smtpctl --------------------------------------------------------------------------------

std::string MtaProcess::describe_routes() const {
  std::string text;
  for (size_t i = 0; i < settings_.routes.size(); ++i) {
    const Route& route = settings_.routes[i];
    text += "route " + std::to_string(i) + ":";
    for (size_t k = 0; k < route.match.size(); ++k) text += (k == 0 ? " " : ", ") + route.match[k];
    if (route.via.empty()) {
      text +=
          " -> by MX, tls " +
          std::string(mail::policy_name(tls_policy(settings_, &route, mail::RelayScheme::smtp)));
    } else {
      text += " ->";
      for (size_t k = 0; k < route.via.size(); ++k)
        text += (k == 0 ? " " : ", ") + route.via[k].to_string() + " (tls " +
                std::string(mail::policy_name(tls_policy(settings_, &route, route.via[k].scheme))) +
                ")";
    }
    // The login, never the password.
    if (!route.auth.empty()) text += ", auth as " + route.auth_login + " (from " + route.auth + ")";
    text += "\n";
  }
  text += "other remote mail: by MX, tls " + std::string(mail::policy_name(settings_.tls_policy)) +
          "\n";
  return text;
}

void MtaProcess::show_mx(msg::Incoming& in, const msg::CtlShowMx& m) {
  if (!ask_lookup(msg::MxQuery{.domain = m.domain, .host = false},
                  Asked{.domain = m.domain, .control_request = in.request_id, .answered = {}}))
    answer_control(in.request_id, false, "lookup is not answering");
}

void MtaProcess::on_answer(msg::Incoming& in, const msg::MxAnswer& m) {
  auto it = asking_.find(in.request_id);
  if (it == asking_.end()) return;
  Asked asked = std::move(it->second);
  asking_.erase(it);
  if (asked.answered) {
    asked.answered(m);
    return;
  }
  answer_control(asked.control_request, m.status == msg::MxStatus::ok, describe(asked.domain, m));
}

void MtaProcess::answer_control(uint32_t request, bool ok, const std::string& text) {
  ipc::Channel* control = runtime_.peer(Role::control);
  if (control == nullptr ||
      !msg::send(*control, msg::CtlResult{.ok = ok, .text = text.substr(0, msg::kMaxCtlText)},
                 request))
    log::warn("cannot answer control");
}

}  // namespace postern::mta
