// One SMTP session (RFC 5321): the state machine from greeting to QUIT, reading commands and
// message data from a client and answering in order, pipelined or not. It never touches the
// spool: message bytes go into a descriptor the queue handed over, and recipients are judged
// by lookup. Input is a stranger's bytes: anything it sends can end this session, never the
// process.
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/ipc/messages.hpp"
#include "common/mail/commands.hpp"
#include "common/mail/data.hpp"
#include "common/mail/envelope.hpp"
#include "common/mail/sasl.hpp"
#include "common/mail/tls_stream.hpp"
#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/log_line.hpp"
#include "common/util/tls.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"

namespace postern::smtp {

class Server;

struct ListenerInfo {
  uint32_t id = 0;
  std::string name;
  config::ListenerRole role = config::ListenerRole::smtp;
  bool plaintext_auth = false;
};

class Session {
 public:
  Session(Server& server, uint64_t id, UniqueFd socket, ListenerInfo listener,
          std::string client_address);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  uint64_t id() const { return id_; }
  const std::string& client_address() const { return client_address_; }

  // Answers to what this session asked of lookup and the queue (routed by Server).
  void on_rcpt_verdict(msg::RcptDecision decision);
  void on_sender_verdict(const msg::SenderVerdict& verdict);
  void on_message_opened(const std::string& queue_id, UniqueFd data);
  void on_message_result(const msg::MessageResult& result);
  void on_auth_verdict(const msg::AuthVerdict& verdict);
  void on_client_verdict(const msg::ClientVerdict& verdict);
  // The process it was waiting for went away; the request will never be answered.
  void on_request_lost();

 private:
  enum class Phase : uint8_t { greeting, ready, data, chunk, closing };
  enum class Waiting : uint8_t { nothing, client, sender, rcpt, open, commit, auth };

  struct Transaction {
    std::string sender;  // canonical; empty for <>
    bool smtputf8 = false;
    bool body_8bit = false;
    DsnRet ret = DsnRet::unspecified;
    std::string envid;
    std::vector<Recipient> recipients;
    std::optional<Recipient> pending_rcpt;  // being judged by lookup
    // The message, once the queue opened it.
    std::string queue_id;
    UniqueFd data;
    std::string spool_buffer;  // bytes not yet written to data
    bool write_failed = false;
    std::optional<mail::DotReader> reader;
    bool chunked = false;  // BDAT carries this message (RFC 3030)
    uint64_t chunked_size = 0;
    bool chunked_too_big = false;
  };
  // The verb table (verbs.cpp): what each verb needs, a check that reads its argument into
  // Arguments or refuses it, and a proceed that does it. A refused BDAT chunk keeps its
  // Refusal until the chunk is read.
  struct Refusal {
    enum class Kind : uint8_t {
      error,  // counts towards the session's error limit (RFC 5321 4.5.3.2)
      reply,  // a refusal the client did nothing wrong to earn (too big, too many)
      fatal,  // the session cannot stay in step with the client: close after the reply
    };
    int code;
    const char* status;
    std::string text;
    Kind kind = Kind::error;
  };
  struct Arguments {
    Transaction transaction;                                         // MAIL
    Recipient recipient;                                             // RCPT
    msg::RcptCheck rcpt_check;                                       // RCPT: what lookup is asked
    uint64_t chunk_size = 0;                                         // BDAT
    bool chunk_last = false;                                         // BDAT
    mail::sasl::Mechanism mechanism = mail::sasl::Mechanism::plain;  // AUTH
    std::optional<std::string_view> initial_response;                // AUTH, into the command
  };
  enum class Need : uint8_t;
  struct VerbRule;
  using Check = std::optional<Refusal> (Session::*)(const mail::Command&, Arguments&) const;
  using Proceed = void (Session::*)(const mail::Command&, Arguments&);
  static const VerbRule* rule_for(mail::Verb verb);
  std::optional<Refusal> unmet(Need need, const VerbRule& rule, const mail::Command& c) const;
  void refuse(const Refusal& refusal);
  static Refusal bad_bdat_size();

  // The session reads plain text from input() and writes it with send(); with TLS these are
  // the decrypted side and the socket's bufferevent carries the ciphertext.
  evbuffer* input();
  void send(std::string_view bytes);
  size_t pending_output();
  bool output_drained();
  bool output_backed_up();
  void resume_input();
  void start_tls();
  bool pump_tls_reads();
  void pump_tls_writes();
  bool tls_went_wrong(mail::TlsStream::Status status);

  static void on_read(bufferevent*, void* self);
  static void on_write(bufferevent*, void* self);
  static void on_event(bufferevent*, short what, void* self);

  // The first reply: 220, or the refusal lookup chose.
  void greet(const msg::ClientVerdict& verdict);
  void process();
  bool read_command_line(std::string& line);
  void handle_line(const std::string& line);
  void consume_data();
  void finish_data();
  void finish_message(int refusal_code, const char* refusal_status, std::string refusal);
  void consume_chunk();
  bool flush_spool_buffer();

  std::optional<Refusal> check_mail(const mail::Command& c, Arguments& a) const;
  std::optional<Refusal> check_rcpt(const mail::Command& c, Arguments& a) const;
  std::optional<Refusal> check_bdat(const mail::Command& c, Arguments& a) const;
  std::optional<Refusal> check_auth(const mail::Command& c, Arguments& a) const;
  void proceed_helo(const mail::Command& c, Arguments& a);
  void proceed_ehlo(const mail::Command& c, Arguments& a);
  void proceed_mail(const mail::Command& c, Arguments& a);
  void proceed_rcpt(const mail::Command& c, Arguments& a);
  void proceed_data(const mail::Command& c, Arguments& a);
  void proceed_bdat(const mail::Command& c, Arguments& a);
  void proceed_rset(const mail::Command& c, Arguments& a);
  void proceed_noop(const mail::Command& c, Arguments& a);
  void proceed_quit(const mail::Command& c, Arguments& a);
  void proceed_vrfy(const mail::Command& c, Arguments& a);
  void proceed_help(const mail::Command& c, Arguments& a);
  void proceed_starttls(const mail::Command& c, Arguments& a);
  void proceed_auth(const mail::Command& c, Arguments& a);
  bool auth_allowed() const;
  void auth_step(mail::sasl::Step step);
  void check_credentials(std::string user, std::string password);
  // Ends the AUTH exchange with this reply; finish_auth also resumes the input held meanwhile
  // (auth_step runs inside process(), whose loop goes on by itself).
  void answer_auth(int code, const char* status, const std::string& text, bool error);
  void finish_auth(int code, const char* status, const std::string& text, bool error);

  // A log line about this session (log_line.hpp): its id, the message's once the queue
  // gave one, the event's name.
  log::Line log_event(std::string_view name) const;
  void reply(int code, const char* status, const std::string& text);
  void bad_command(int code, const char* status, const std::string& text);
  void reset_transaction();
  void close_after_reply();
  void set_timeout(uint32_t seconds);

  Server& server_;
  uint64_t id_;
  BufferEventPtr bev_;
  ListenerInfo listener_;
  std::string client_address_;
  Phase phase_ = Phase::greeting;
  Waiting waiting_ = Waiting::nothing;
  bool esmtp_ = false;
  std::string helo_;
  // From the client checks (lookup) before the greeting.
  std::string verified_name_;  // forward-confirmed host name, for Received
  std::string checks_header_;  // X-Postern-Checks: value, empty when nothing was tagged
  bool refused_ = false;       // greeted with 554: only QUIT is accepted (RFC 5321 3.1)
  // A reply held back on purpose: a failed AUTH's, or the greeting of a client that connects
  // too often.
  std::unique_ptr<Timer> held_reply_;
  std::optional<Transaction> txn_;
  uint32_t errors_ = 0;
  // The command being answered, as the log shows it: AUTH without its credentials. A reply
  // of 4xx or 5xx to it is logged with it (event=reject); empty outside commands.
  std::string command_;
  uint32_t accepted_ = 0;  // messages, for the disconnect line
  bool discarding_long_line_ = false;
  // SMTP AUTH.
  std::string auth_user_;                     // empty until authenticated
  mail::sasl::ServerExchange auth_exchange_;  // active while the client owes a response
  std::string auth_pending_user_;
  // The BDAT chunk being read, and the answer owed for it when it must be refused.
  uint64_t chunk_remaining_ = 0;
  bool chunk_last_ = false;
  std::optional<Refusal> chunk_refusal_;
  bool in_process_ = false;
  // The client does not read its replies: input waits until it does (see kOutputHighWater).
  bool input_paused_ = false;
  bool paused_before_ = false;  // logged once per session

  // TLS, once STARTTLS or an smtps listener began it; carried by bev_.
  std::unique_ptr<mail::TlsStream> tls_;
  std::string tls_info_;  // "TLSv1.3 TLS_AES_256_GCM_SHA384"
};

}  // namespace postern::smtp
