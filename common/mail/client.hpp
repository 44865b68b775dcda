// The asynchronous SMTP/LMTP client (RFC 5321, RFC 2033, RFC 2920 PIPELINING): one session on
// one connection, driven by the event loop and never blocking. It greets, says LHLO or EHLO
// (HELO when EHLO is refused), reads the capabilities, and runs transactions one after the other
// on the same connection: MAIL, RCPT (pipelined when offered), DATA with the message streamed
// dot-stuffed from its spool descriptor, and a result per recipient (LMTP's one reply each after
// the final dot). What the server says is untrusted: every reply goes through reply.hpp's
// bounds, every wait has its timeout, and a server that breaks the protocol ends the session.
// mda's LMTP runs on it; the mta builds on it (its stream seam carries STARTTLS, see
// client_stream.hpp), the choice of server (MX, ports) and TLS policy being the caller's.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/mail/client_stream.hpp"
#include "common/mail/dot_stuff.hpp"
#include "common/mail/reply.hpp"
#include "common/mail/sasl.hpp"
#include "common/util/event.hpp"
#include "common/util/io.hpp"

namespace postern::mail {

enum class ClientDialect { smtp, lmtp };
class ClientSession;

// How long the client waits for each step. Defaults are RFC 5321 4.5.3.2's minimums; the
// connect, hello, RSET and QUIT waits, which it does not name, are Postfix's (smtp_*_timeout).
struct ClientTimeouts {
  std::chrono::milliseconds connect = std::chrono::seconds(30);
  std::chrono::milliseconds greeting = std::chrono::minutes(5);  // 4.5.3.2.1
  std::chrono::milliseconds hello = std::chrono::minutes(5);
  std::chrono::milliseconds mail = std::chrono::minutes(5);        // 4.5.3.2.2
  std::chrono::milliseconds rcpt = std::chrono::minutes(5);        // 4.5.3.2.3
  std::chrono::milliseconds data = std::chrono::minutes(2);        // 4.5.3.2.4, to the 354
  std::chrono::milliseconds data_block = std::chrono::minutes(3);  // 4.5.3.2.5, each send
  std::chrono::milliseconds data_end = std::chrono::minutes(10);   // 4.5.3.2.6, after the dot
  std::chrono::milliseconds rset = std::chrono::seconds(20);
  std::chrono::milliseconds quit = std::chrono::minutes(5);
  // Every wait the same: for a local server whose silence means it is stuck.
  static ClientTimeouts all(std::chrono::milliseconds each);
};

// The extensions an EHLO (or LHLO) reply offers that a client acts on.
struct Capabilities {
  bool pipelining = false;
  bool starttls = false;
  bool eightbitmime = false;
  bool dsn = false;
  bool smtputf8 = false;
  bool enhanced_status_codes = false;
  bool chunking = false;
  std::optional<uint64_t> size;   // SIZE's limit; 0 for "no fixed limit" (RFC 1870)
  std::vector<std::string> auth;  // mechanisms, upper-cased
};
// The greeting line is skipped: keywords are on the lines after the first (RFC 5321 4.1.1.1).
Capabilities parse_capabilities(const Reply& ehlo);

struct ClientOptions {
  ClientDialect dialect = ClientDialect::smtp;
  std::string helo_name = "localhost";  // our name in LHLO/EHLO/HELO
  ClientTimeouts timeouts;
  bool pipelining = true;  // used when the server offers it
  // STARTTLS (RFC 3207): when set and the server offers it, the session says STARTTLS and, on
  // 220, hands its stream to start_tls to wrap (the mta: a TLS stream over the plain one);
  // the wrapped stream's connected() says the handshake is done, and EHLO is said anew.
  std::function<std::unique_ptr<ClientStream>(std::unique_ptr<ClientStream>)> start_tls;
  // Fail every recipient (4.7.10) rather than go on in the clear.
  bool require_tls = false;
  // AUTH (RFC 4954) after the hello, with PLAIN (preferred) or LOGIN as the server offers:
  // only over TLS (a plain session fails 4.7.10 without sending them), and a refusal fails
  // every recipient temporarily (the credentials are the administrator's to fix).
  struct Credentials {
    std::string login;
    std::string password;
  };
  std::optional<Credentials> auth;
  // Runs once, when the session is first ready for a transaction (greeting, hello and STARTTLS
  // done): the capabilities are known, so a caller that builds its transactions from them
  // (the mta: SIZE, DSN, SMTPUTF8) sends the first one from here. It must not destroy the
  // session.
  std::function<void(ClientSession&)> ready;
};

// One message to some recipients. The caller builds parameters (SIZE, BODY, ENVID with xtext,
// ORCPT...) from the capabilities; the session sends them as given after the path.
struct ClientTransaction {
  std::string sender;  // the reverse-path without <>, "" for <>
  std::string mail_parameters;
  struct Recipient {
    std::string address;  // without <>
    std::string parameters;
  };
  std::vector<Recipient> recipients;
  std::string prefix;   // bytes sent before the message (e.g. "Return-Path: <...>\r\n")
  MessageData message;  // read with pread while the connection has room; the fd stays the
                        // caller's and must stay open until the result
};

// Where in the protocol a recipient's fate was decided.
// tls: the TLS handshake (after STARTTLS, or smtps's first).
enum class ClientPhase { connect, greeting, hello, tls, mail, rcpt, data, body, data_end };
const char* phase_name(ClientPhase phase);  // "connect", "greeting", "hello"... as in logs

enum class RecipientStatus { delivered, temporary, permanent };

struct RecipientResult {
  RecipientStatus status = RecipientStatus::temporary;
  ClientPhase phase = ClientPhase::connect;
  int code = 0;             // the server's reply code; 0 when the client decided (see text)
  std::string status_code;  // enhanced status: the server's, or one for the class or failure
  // The server's reply text (its last line), or what went wrong here ("timed out",
  // "the connection was closed", "malformed reply code", "cannot connect to ...").
  std::string text;
  // Our side failed, not the server or the connection: the message could not be read.
  bool local = false;
  bool from_server() const { return code != 0; }
};

class ClientSession {
 public:
  using Done = std::function<void(std::vector<RecipientResult>)>;
  // closed runs once, when the connection is over for any reason (after the result of a
  // transaction it ended). Any of these callbacks may destroy the session.
  using Closed = std::function<void(ClientSession&)>;
  ClientSession(event_base* base, ClientOptions options, Closed closed);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Connects to endpoint (plain); or takes a stream another layer opened (TLS, a test's).
  void open(const Endpoint& endpoint);
  void open(std::unique_ptr<ClientStream> stream);

  // Runs a transaction once the session is ready (greeting and hello done), one at a time in
  // the order sent, on the same connection. done gets one result per recipient, in
  // their order. A session that cannot run it (closed, or broken before or during it) answers
  // every recipient still open with a temporary failure.
  void send(ClientTransaction transaction, Done done);
  // True when the connection is up and no transaction is waiting or under way: one sent now
  // starts at once (after an RSET the last one may owe).
  bool idle() const;
  bool closed() const { return state_ == State::closed; }
  // QUIT was said: the session takes no more transactions (one sent is answered 4.4.2).
  bool quitting() const { return state_ == State::quitting; }

  // Says QUIT, waits for the reply (or the quit timeout), then closes.
  void quit();

  const Capabilities& capabilities() const { return capabilities_; }
  // Why the connection ended, when it failed rather than being quit: the result its open
  // recipients got (or would have got, with none open).
  const std::optional<RecipientResult>& failure() const { return failure_; }
  bool tls() const { return tls_; }
  // The TLS stream's facts (client_stream.hpp): a copy kept when the connection ends.
  const std::optional<TlsFacts>& tls_facts() const { return tls_facts_; }

 private:
  enum class State {
    unopened,
    connecting,
    greeting,
    hello,
    handshake,  // STARTTLS taken, the TLS stream not connected yet
    ready,
    busy,
    quitting,
    closed
  };
  // The replies a session waits for; rcpt and data_end also name whose.
  enum class Awaiting {
    greeting,
    ehlo,
    helo,
    starttls,
    auth,
    mail,
    rcpt,
    data,
    data_end,
    rset,
    quit
  };
  struct Expect {
    Awaiting what = Awaiting::greeting;
    size_t index = 0;  // rcpt: into the recipients; data_end (LMTP): into accepted
  };
  struct Running {
    ClientTransaction transaction;
    Done done;
    std::vector<std::optional<RecipientResult>> results;
    std::vector<size_t> accepted;  // recipients whose RCPT was taken, in order
    bool mail_refused = false;
    bool pipelined = false;
    size_t next_rcpt = 0;  // the next RCPT to send
    bool data_sent = false;
    bool prefix_sent = false;
    uint64_t offset = 0;  // of the message, read so far
    DotStuffer stuffer;
    bool body_done = false;
  };

  void start_stream();
  void on_connected();
  void on_readable();
  void on_drained();
  void on_reply(const Reply& reply);

  void write(const std::string& line, Awaiting what, size_t index = 0);
  void begin();
  void advance();
  void send_commands();
  void send_rcpt(size_t i);
  void reply_greeting(const Reply& reply);
  void reply_hello(Awaiting what, const Reply& reply);
  void reply_starttls(const Reply& reply);
  // After the hello (and TLS): AUTH when credentials are given, else ready.
  void authenticate();
  void reply_auth(const Reply& reply);
  void become_ready();
  void reply_mail(const Reply& reply);
  void reply_rcpt(size_t i, const Reply& reply);
  void reply_data(const Reply& reply);
  void reply_data_end(size_t k, const Reply& reply);
  void pump_body();
  // Ends the running transaction and starts the next one waiting.
  void finish_transaction(bool needs_rset);
  // Ends the running transaction: its callback gets the results. False when that callback
  // destroyed the session.
  bool report_transaction(bool needs_rset);
  // The connection is over: every recipient still open gets a temporary failure with why.
  void abort(const std::string& why, const std::string& status_code = "4.4.2");
  // The server refused the greeting or the hello: the same for every open recipient.
  void refused(const Reply& reply);
  void fail_open(const RecipientResult& result);
  void close();        // the connection goes; no callback
  void end_quietly();  // after QUIT: close, and say so
  void rearm();
  ClientPhase current_phase() const;
  RecipientResult from_reply(ClientPhase phase, const Reply& reply) const;

  event_base* base_;
  ClientOptions options_;
  Closed closed_callback_;
  std::string peer_ = "the server";  // for messages: the endpoint, when open() was given one
  std::unique_ptr<ClientStream> stream_;
  std::unique_ptr<ClientStream> retired_;  // closed while one of its callbacks ran
  State state_ = State::unopened;
  Timer timer_;
  Timer reaper_;
  ReplyParser parser_;
  std::deque<Expect> expected_;  // replies owed, oldest first
  Capabilities capabilities_;
  bool tls_ = false;  // the stream was wrapped by start_tls
  bool needs_rset_ = false;
  bool replied_early_ = false;  // input was waiting when a command went out after a pause  // the
                                // last transaction ended before its message
  std::optional<RecipientResult> failure_;
  std::optional<TlsFacts> tls_facts_;
  std::unique_ptr<sasl::ClientExchange> auth_;  // while AUTH is under way
  bool authenticated_ = false;
  std::optional<Running> running_;
  std::deque<std::pair<ClientTransaction, Done>> waiting_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace postern::mail
