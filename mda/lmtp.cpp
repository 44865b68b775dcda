// LMTP deliveries on the client engine; see lmtp.hpp.
#include "mda/lmtp.hpp"

#include <algorithm>

#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::mda {

LmtpAnswer lmtp_answer(const mail::RecipientResult& r) {
  LmtpAnswer a;
  a.outcome = r.status == mail::RecipientStatus::delivered ? msg::DeliveryOutcome::delivered
              : r.status == mail::RecipientStatus::permanent
                  ? msg::DeliveryOutcome::permanent_failure
                  : msg::DeliveryOutcome::temporary_failure;
  a.dsn = r.status_code;
  if (r.local || r.phase == mail::ClientPhase::connect) {
    a.detail = r.text;
  } else if (!r.from_server()) {
    a.detail = std::string("LMTP server broke off at ") + mail::phase_name(r.phase) + ": " + r.text;
  } else if (r.status == mail::RecipientStatus::delivered) {
    a.detail = "delivered over LMTP";
  } else if (r.phase == mail::ClientPhase::data_end) {
    a.detail = "LMTP: " + r.text;
  } else {
    a.detail = std::string("LMTP ") + mail::phase_name(r.phase) + " refused: " + r.text;
  }
  return a;
}

LmtpDeliveries::LmtpDeliveries(event_base* base, mail::ClientTimeouts timeouts)
    : base_(base), timeouts_(timeouts), reaper_(base, [this] { ended_.clear(); }) {}

LmtpDeliveries::~LmtpDeliveries() = default;

void LmtpDeliveries::deliver(LmtpRequest request, Done done) {
  auto server = servers_.find(request.target);
  if (server == servers_.end()) {
    const auto endpoint = mail::parse_endpoint(request.target);
    if (!endpoint) {
      std::vector<LmtpAnswer> answers(
          request.mailboxes.size(),
          {msg::DeliveryOutcome::temporary_failure, "4.4.1", "bad LMTP address " + request.target});
      done(std::move(answers));
      return;
    }
    server = servers_.emplace(request.target, Server{*endpoint, {}, {}}).first;
  }
  const std::string target = request.target;
  server->second.waiting.push_back({std::move(request), std::move(done)});
  dispatch(target);
}

// Each waiting transaction goes on a free connection, or a new one while the server has fewer
// than its bound.
void LmtpDeliveries::dispatch(const std::string& target) {
  Server& server = servers_.at(target);
  while (!server.waiting.empty()) {
    mail::ClientSession* free = nullptr;
    for (auto& s : server.sessions)
      if (s->idle()) free = s.get();
    if (free == nullptr) {
      if (server.sessions.size() >= kMaxLmtpConnections) return;
      mail::ClientOptions options{.dialect = mail::ClientDialect::lmtp,
                                  .helo_name = hostname_,
                                  .timeouts = timeouts_,
                                  .pipelining = true};
      auto session = std::make_unique<mail::ClientSession>(
          base_, std::move(options),
          [this, target](mail::ClientSession& ended) { closed(target, &ended); });
      free = session.get();
      server.sessions.push_back(std::move(session));
      free->open(server.endpoint);
    }
    Pending pending = std::move(server.waiting.front());
    server.waiting.pop_front();
    start(target, *free, std::move(pending));
  }
}

void LmtpDeliveries::start(const std::string& target, mail::ClientSession& session,
                           Pending pending) {
  mail::ClientTransaction t;
  t.sender = pending.request.sender;
  for (auto& mailbox : pending.request.mailboxes) t.recipients.push_back({mailbox, ""});
  t.prefix = "Return-Path: <" + pending.request.sender + ">\r\n";
  t.message = pending.request.message;
  session.send(std::move(t), [this, target, &session, done = std::move(pending.done)](
                                 const std::vector<mail::RecipientResult>& results) {
    std::vector<LmtpAnswer> answers;
    answers.reserve(results.size());
    for (const auto& r : results) answers.push_back(lmtp_answer(r));
    done(std::move(answers));
    // The connection takes the next transaction waiting for this server, or says QUIT.
    Server& server = servers_.at(target);
    if (!session.closed() && !server.waiting.empty()) {
      dispatch(target);
      return;
    }
    if (!session.closed()) session.quit();
  });
}

void LmtpDeliveries::closed(const std::string& target, mail::ClientSession* session) {
  Server& server = servers_.at(target);
  auto it = std::find_if(server.sessions.begin(), server.sessions.end(),
                         [session](const auto& s) { return s.get() == session; });
  if (it != server.sessions.end()) {
    ended_.push_back(std::move(*it));
    server.sessions.erase(it);
    reaper_.arm(std::chrono::milliseconds(0));
  }
  // A connection that broke leaves room for one that may not.
  if (!server.waiting.empty()) {
    dispatch(target);
  } else if (server.sessions.empty()) {
    servers_.erase(target);
  }
}

size_t LmtpDeliveries::connections(const std::string& target) const {
  const auto it = servers_.find(target);
  return it == servers_.end() ? 0 : it->second.sessions.size();
}

size_t LmtpDeliveries::waiting(const std::string& target) const {
  const auto it = servers_.find(target);
  return it == servers_.end() ? 0 : it->second.waiting.size();
}

}  // namespace postern::mda
