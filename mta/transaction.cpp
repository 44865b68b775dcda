// MAIL and RCPT parameters and the checks before sending; see transaction.hpp.
#include "mta/transaction.hpp"

#include "common/mail/commands.hpp"

namespace postern::mta {

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
