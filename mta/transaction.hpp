// What the mta says to a server for one message: the MAIL and RCPT parameters (SIZE, BODY,
// SMTPUTF8, and the DSN ones when the server offers DSN, RFC 3461), and whether the message
// may go to that server at all (SIZE, SMTPUTF8), decided from its EHLO capabilities. Pure
// functions of the envelope and the capabilities: no I/O.
#pragma once

#include <optional>
#include <string>

#include "common/mail/client.hpp"
#include "common/mail/envelope.hpp"
#include "mta/api.hpp"

namespace postern::mta {

// A refusal decided here, before anything is sent: every recipient of the transaction gets it.
struct Refusal {
  std::string dsn;
  std::string detail;
};

// nullopt: the server can take the message. Otherwise why not, permanently: larger than the
// server's SIZE (5.3.4, RFC 1870 6.1: the client should not send it), or SMTPUTF8 needed and
// not offered (5.6.7, RFC 6531 3.4). An 8-bit body to a server without 8BITMIME is sent as it
// is, as Postfix does (RFC 6152 3 asks for conversion or a bounce; conversion would rewrite
// MIME structure, a bounce would lose mail most servers take): mail_parameters leaves BODY out.
std::optional<Refusal> refuse_before_sending(const Envelope& envelope,
                                             const mail::Capabilities& capabilities);

// " SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By", each only when the server offers
// its extension and the envelope has it.
std::string mail_parameters(const Envelope& envelope, const mail::Capabilities& capabilities);
// " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.org" when the server offers DSN.
std::string rcpt_parameters(const msg::RemoteRecipient& recipient,
                            const mail::Capabilities& capabilities);

}  // namespace postern::mta
