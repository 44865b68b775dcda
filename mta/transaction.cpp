// MAIL and RCPT parameters and the checks before sending (transaction.hpp); a transaction's
// results as the queue takes them (relay.hpp).
#include "mta/transaction.hpp"

#include <algorithm>

#include "common/mail/commands.hpp"
#include "common/util/ascii.hpp"
#include "mta/relay.hpp"

namespace postern::mta {
namespace {

std::string reply_detail(const mail::RecipientResult& r) {
  if (!r.from_server()) {
    // Where it went wrong, as for a server's reply: a timeout or a dropped connection after the
    // final dot (the server may hold the message) is other news than one at the greeting.
    if (r.phase == mail::ClientPhase::connect || r.local) return r.text;
    if (r.phase == mail::ClientPhase::greeting) return r.text + " (at the greeting)";
    if (r.phase == mail::ClientPhase::tls) return r.text + " (during the TLS handshake)";
    if (r.phase == mail::ClientPhase::body) return r.text + " (while sending the message)";
    return r.text + " (in reply to " + mail::phase_name(r.phase) + ")";
  }
  std::string text = std::to_string(r.code) + " " + r.text;
  if (r.status != mail::RecipientStatus::delivered)
    text += std::string(" (in reply to ") + mail::phase_name(r.phase) + ")";
  return text;
}

}  // namespace

msg::DeliveryResult delivery_result(const mail::RecipientResult& r, const Target& target,
                                    const std::string& tls) {
  msg::DeliveryResult out;
  out.outcome = r.status == mail::RecipientStatus::delivered ? msg::DeliveryOutcome::delivered
                : r.status == mail::RecipientStatus::permanent
                    ? msg::DeliveryOutcome::permanent_failure
                    : msg::DeliveryOutcome::temporary_failure;
  out.dsn = r.status_code.empty()
                ? (out.outcome == msg::DeliveryOutcome::delivered           ? "2.0.0"
                   : out.outcome == msg::DeliveryOutcome::permanent_failure ? "5.0.0"
                                                                            : "4.0.0")
                : r.status_code;
  out.detail = reply_detail(r);
  if (out.detail.size() > msg::kMaxDeliveryDetail) out.detail.resize(msg::kMaxDeliveryDetail);
  if (r.from_server() || r.phase != mail::ClientPhase::connect) {
    out.remote_mta = target.name();
    if (out.remote_mta.size() > msg::kMaxRemoteMta) out.remote_mta.clear();
  }
  if (!out.remote_mta.empty()) {
    out.tls = tls.substr(0, msg::kMaxTlsFacts);
    out.source = target.source;
  }
  return out;
}

void set_delays(msg::DeliveryResult& r, const Delivery& delivery, const Clock::time_point opened,
                const Clock::time_point ready_at, const bool fresh) {
  const auto ms = [](Clock::duration d) {
    const auto n = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return static_cast<uint32_t>(std::clamp<int64_t>(n, 0, msg::kMaxDelayMs));
  };
  // A new connection's set-up counts from when it was begun, or from when this delivery
  // came if it was begun for an earlier one; a reused connection cost none.
  const Clock::time_point from = std::max(opened, delivery.queued);
  const Clock::duration setup = fresh && ready_at > from ? ready_at - from : Clock::duration{};
  r.setup_ms = ms(setup);
  r.wait_ms = ms(delivery.started - delivery.queued - setup);
  r.transfer_ms = ms(Clock::now() - delivery.started);
}

bool too_many_recipients(const mail::RecipientResult& r) {
  if (r.phase != mail::ClientPhase::rcpt || (r.code != 452 && r.code != 552)) return false;
  if (r.status_code == "4.5.3" || r.status_code == "5.5.3") return true;
  return ascii::lower(r.text).find("too many recipients") != std::string::npos;
}

std::optional<Refusal> refuse_before_sending(const Envelope& envelope,
                                             const mail::Capabilities& capabilities) {
  if (capabilities.size && *capabilities.size > 0 && envelope.size > *capabilities.size)
    return Refusal{"5.3.4", "message size " + std::to_string(envelope.size) +
                                " exceeds the server's limit of " +
                                std::to_string(*capabilities.size)};
  if (envelope.smtputf8 && !capabilities.smtputf8)
    return Refusal{"5.6.7", "the message needs SMTPUTF8, which the server does not offer"};
  return std::nullopt;
}

std::string mail_parameters(const Envelope& envelope, const mail::Capabilities& capabilities) {
  std::string out;
  if (capabilities.size) out += " SIZE=" + std::to_string(envelope.size);
  if (envelope.body_8bit && capabilities.eightbitmime) out += " BODY=8BITMIME";
  if (envelope.smtputf8 && capabilities.smtputf8) out += " SMTPUTF8";
  if (capabilities.dsn) {
    if (envelope.ret == DsnRet::full) out += " RET=FULL";
    if (envelope.ret == DsnRet::headers) out += " RET=HDRS";
    if (!envelope.envid.empty()) out += " ENVID=" + mail::encode_xtext(envelope.envid);
  }
  return out;
}

std::string rcpt_parameters(const msg::RemoteRecipient& recipient,
                            const mail::Capabilities& capabilities) {
  if (!capabilities.dsn) return {};
  std::string out;
  const DsnNotify& n = recipient.notify;
  if (n.never) {
    out += " NOTIFY=NEVER";
  } else if (n.success || n.failure || n.delay) {
    std::string list;
    for (const auto& [set, word] : {std::pair{n.success, "SUCCESS"},
                                    std::pair{n.failure, "FAILURE"}, std::pair{n.delay, "DELAY"}})
      if (set) list += (list.empty() ? "" : ",") + std::string(word);
    out += " NOTIFY=" + list;
  }
  if (!recipient.orcpt.empty())
    out +=
        " ORCPT=" + (recipient.orcpt_type.empty() ? std::string("rfc822") : recipient.orcpt_type) +
        ";" + mail::encode_xtext(recipient.orcpt);
  return out;
}

}  // namespace postern::mta
