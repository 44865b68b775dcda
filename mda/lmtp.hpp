// LMTP delivery (RFC 2033), e.g. into Dovecot, on mda's event loop: one transaction per message
// and server, one answer per recipient, through the client engine (common/mail/client.hpp).
// Never blocks and holds no thread: a server that is slow or stuck holds up only its own
// deliveries, never the loop, Maildirs, mbox files or helpers. What a server answers is
// untrusted input, bounded by the engine.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/mail/client.hpp"
#include "common/util/event.hpp"
#include "common/util/io.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::mda {

// Connections to one LMTP server at once; transactions beyond wait and go on the first that is
// free (the connection is reused). Dovecot serves each connection with a process of its own;
// Postfix's LMTP client holds at most 20 a destination.
constexpr size_t kMaxLmtpConnections = 10;
// How long the client waits for each step: a local server silent this long is stuck, and the
// recipients are tried again later.
constexpr std::chrono::seconds kLmtpTimeout{60};

// A job's recipients for one server.
struct LmtpRequest {
  std::string target;                  // "unix:/path/to/socket", "host:port", "[v6]:port"
  std::string sender;                  // the envelope sender, "" for <>
  std::vector<std::string> mailboxes;  // one RCPT each
  MessageData message;                 // open until the answer
};

// One per mailbox, in the request's order.
struct LmtpAnswer {
  msg::DeliveryOutcome outcome = msg::DeliveryOutcome::temporary_failure;
  std::string dsn;
  std::string detail;
};

class LmtpDeliveries {
 public:
  using Done = std::function<void(std::vector<LmtpAnswer>)>;
  LmtpDeliveries(event_base* base, mail::ClientTimeouts timeouts);
  ~LmtpDeliveries();
  LmtpDeliveries(const LmtpDeliveries&) = delete;
  LmtpDeliveries& operator=(const LmtpDeliveries&) = delete;

  void set_hostname(std::string hostname) { hostname_ = std::move(hostname); }
  // done runs on the loop when every mailbox has its answer (at once for a bad target).
  void deliver(LmtpRequest request, Done done);

  size_t connections(const std::string& target) const;  // open to target now
  size_t waiting(const std::string& target) const;      // transactions waiting for one

 private:
  struct Pending {
    LmtpRequest request;
    Done done;
  };
  struct Server {
    mail::Endpoint endpoint;
    std::deque<Pending> waiting;
    std::vector<std::unique_ptr<mail::ClientSession>> sessions;
  };
  void dispatch(const std::string& target);
  void start(const std::string& target, mail::ClientSession& session, Pending pending);
  void closed(const std::string& target, mail::ClientSession* session);

  event_base* base_;
  mail::ClientTimeouts timeouts_;
  std::string hostname_ = "localhost";
  std::map<std::string, Server> servers_;
  // Sessions that ended, freed on the next loop turn rather than inside their own callbacks.
  std::vector<std::unique_ptr<mail::ClientSession>> ended_;
  Timer reaper_;
};

// The answer for a recipient from the engine's result, with the log's wording.
LmtpAnswer lmtp_answer(const mail::RecipientResult& result);

}  // namespace postern::mda
