// Outbound connections and what goes over them: a Destination per route or domain (its
// servers, its waiting deliveries, its limits), the connection cache (a session stays open
// after a transaction for the next message to the same destination, found by destination and
// by server address, limited by idle time and message count), the global connection cap, and
// one transaction per message and destination carrying all its recipients (split when the
// server answers 452 4.5.3 "too many recipients"). Knows nothing of IPC: where servers are comes
// from a Resolve callback (the mta asks lookup), results go to a Report callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/mail/client.hpp"
#include "common/mail/route.hpp"
#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "common/util/tls.hpp"
#include "mta/api.hpp"
#include "mta/shaping.hpp"
#include "queue/api.hpp"

namespace postern::mta {

using Clock = std::chrono::steady_clock;

// A DeliverRemote from the queue, from its arrival to its report.
struct Job {
  uint64_t id = 0;
  uint32_t request_id = 0;  // the queue's
  msg::DeliverRemote message;
  UniqueFd fd;
  Clock::time_point started = Clock::now();
  std::vector<bool> reported;  // per recipient: its result is in
  // Results not sent to the queue yet: they go as they gather (MtaProcess, kEagerResults), not
  // all at the end, so a message waiting on slow destinations does not hold every result.
  std::vector<msg::DeliveryResult> unsent;
  size_t unsent_bytes = 0;
  size_t open = 0;  // recipients without a result
  MessageData data() const { return {fd.get(), message.envelope.size}; }
};

// Some of a job's recipients for one destination, waiting for a connection or on one.
struct Delivery {
  std::shared_ptr<Job> job;
  std::vector<size_t> recipients;  // into job->message.recipients
  bool retried = false;            // sent again once: a cached connection went stale, or "too fast"
  Clock::time_point queued;        // handed to the Relay (for the log's delays=)
  Clock::time_point started;       // its transaction began
};

// One address of one server.
struct Target {
  std::string host;  // the MX host's or relay's name; the address itself for a literal
  std::string address;
  uint16_t port = 25;
  mail::RelayScheme scheme = mail::RelayScheme::smtp;
  mail::TlsPolicy tls = mail::TlsPolicy::opportunistic;  // smtps: encrypt or verify
  uint32_t preference = 0;
  // The credentials of the route that sent mail here, for AUTH; none for MX and routes without
  // auth. Taken when the route was resolved, so a reload never sends them elsewhere.
  std::shared_ptr<const mail::ClientOptions::Credentials>
      auth;  // the MX preference, or the route server's place: lower goes first
  // The local address the connection leaves from (mta/source.hpp: the route's, the site's or
  // relay_source, of this address's family); empty: the system chooses.
  std::string source;
  std::string name() const;  // "mx.example.org[192.0.2.1]:25": a DSN's Remote-MTA, the log's relay=
  std::string key() const;   // "smtp://192.0.2.1:25": the server, by address
  // The connection cache's key by address: key() and the TLS policy, for verify the name
  // verified, and the source address, so a connection is shared only by destinations that ask
  // no more of it and leave from the same address.
  std::string cache_key() const;
};

// Where a destination's mail goes, or why it cannot go anywhere now.
struct Resolution {
  enum class Kind : uint8_t { ok, temporary, permanent };
  Kind kind = Kind::temporary;
  std::vector<Target> targets;  // ok: in the order to try them
  std::string dsn;              // otherwise: the recipients' status and why
  std::string detail;
  // The source addresses of the route that sent mail here, which win over the site's (their
  // targets get theirs when the site is known); empty: none.
  std::vector<std::string> source;
};

class Relay {
 public:
  // Asks where a destination's mail goes; done runs once, later or inside the call.
  using Resolve =
      std::function<void(const std::string& destination, std::function<void(Resolution)> done)>;
  // A recipient's result (index into job.message.recipients).
  using Report = std::function<void(Job& job, size_t recipient, msg::DeliveryResult result)>;
  Relay(event_base* base, Resolve resolve, Report report);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void configure(const Settings& settings);
  // The CA certificates (PEM) the verify policy checks against; until they come, or when they
  // are unusable (why), verify connections fail.
  void set_ca(const std::string& pem, const std::string& name);
  // Delivers to the destination of key (a route's or a domain's, see MtaProcess) in its turn.
  void submit(const std::string& key, Delivery delivery);
  // Deliveries not on a connection yet are dropped without a result (the queue that sent them
  // is gone; its successor sends them again). Those on a connection finish.
  void drop_waiting();

  size_t connections() const { return connections_.size(); }
  size_t idle_connections() const;
  // Text for smtpctl: each destination, its connections and what waits (show relays), and the
  // sites; each server by address (show hosts).
  std::string describe() const;
  std::string describe_hosts() const;

 private:
  struct Connection {
    uint64_t id = 0;
    std::string destination;      // the one it serves now (it may move to another by address)
    std::vector<Target> targets;  // while connecting: what is left to try, in order
    size_t target_index = 0;
    Target target;  // the server it is connected (or connecting) to
    std::unique_ptr<mail::ClientSession> session;
    bool ready = false;
    bool busy = false;
    bool plaintext = false;       // opportunistic TLS failed with this server: without it
    bool tls_impossible = false;  // TLS was required and could not be set up here
    std::string tls;              // once ready: how it is protected (TlsFacts), empty in the clear
    std::string closing;          // why QUIT was said (idle, limit...): the log's event=close
    uint32_t messages = 0;
    uint32_t sent = 0;  // transactions the server took mail in: the log's messages=
    std::unique_ptr<Timer> idle;
    Clock::time_point opened;         // the first server was tried
    Clock::time_point ready_at;       // the session was ready for mail
    uint64_t sources_generation = 0;  // of the source addresses it was opened under
  };
  struct Destination {
    std::string key;
    std::optional<Resolution> resolution;
    Clock::time_point resolved_at;
    bool resolving = false;
    std::deque<Delivery> waiting;
    std::vector<uint64_t> connections;
    // Its site (shaping.hpp), known once it is resolved: the budget it shares.
    std::string site;
    // The server's recipient limit, learned from 452 4.5.3 (the site's may be lower).
    size_t recipient_limit = msg::kLocalRecipientsPerJob;
    // Connections its server refused in a row while others were up, and when the next may be
    // opened: a second for each, up to kMaxConnectHold.
    uint32_t refused_in_a_row = 0;
    Clock::time_point connect_after{};
  };
  static constexpr uint32_t kMaxConnectHold = 5;

  // A server by address (Target::key()): connections that failed in a row, and until when it
  // is left alone; what it carried. Servers that are up and unused are forgotten past kMaxHosts.
  struct Host {
    std::string name;  // Target::name() of the first connection
    uint32_t failures = 0;
    Clock::time_point down_until{};
    std::string last_failure;
    uint64_t messages = 0;  // transactions it accepted mail in
  };
  static constexpr size_t kMaxHosts = 10000;
  // A server that could not be connected to is left alone for 10 s, doubled for each failure in
  // a row, up to 5 minutes; new connections try its destination's other servers first, and a
  // destination whose servers are all down defers at once until the first is back.
  static constexpr auto kHostDownFirst = std::chrono::seconds(10);
  static constexpr auto kHostDownMost = std::chrono::minutes(5);
  Host& host(const Target& t);
  bool down(const Target& t) const;
  // Seconds the server is now left alone for, when the failure counts against it.
  std::optional<int64_t> host_failed(const Connection& c, const mail::RecipientResult& failure);
  // Says QUIT on a connection, giving the log's reason.
  static void close_for(Connection& c, const char* reason);

  Destination& destination(const std::string& key);
  void dispatch(const std::string& key);
  void resolved(const std::string& key, Resolution resolution);
  void fail_waiting(Destination& d, msg::DeliveryOutcome outcome, const std::string& dsn,
                    const std::string& detail, const std::string& remote_mta,
                    uint32_t retry_after = 0);
  // The site's gate said no: wait (the shaping timer dispatches again) or defer what waits.
  // True when the destination may go on.
  bool gate_open(Destination& d, const Shaper::Gate& gate);
  void wake_after(Clock::duration delay);
  void on_shaping_timer();
  // The connections of d's site (every destination sharing its budget); with keep, only those
  // it keeps.
  size_t site_connections(const Destination& d,
                          const std::function<bool(const Connection&)>& keep = nullptr) const;
  void open_connection(Destination& d);
  void connect(Connection& c);
  // How c's connection starts TLS, as its target's policy says; why it cannot, or empty.
  std::string arrange_tls(Connection& c, mail::ClientOptions& options,
                          std::unique_ptr<mail::ClientStream>& smtps);
  // After a failed TLS handshake: true when the same server is tried again in the clear.
  bool fall_back_to_plaintext(Connection& c, const mail::RecipientResult& failure);
  void on_ready(uint64_t id);
  void on_closed(uint64_t id);
  void give_work(Connection& c);
  void start(Connection& c, Destination& d, Delivery delivery);
  void on_results(uint64_t id, Delivery delivery, std::vector<mail::RecipientResult> results);
  void park(Connection& c);
  void unpark(Connection& c);
  void retire(Connection& c);
  bool evict_idle_elsewhere(const std::string& key);
  // Whether the destination's mail goes to the server of an idle connection (its cache key).
  bool goes_to(const std::string& key, const std::string& cache_key) const;
  void kick_slot_waiters();
  void forget_if_unused(const std::string& key);
  Connection* find(uint64_t id);
  static bool usable(const Connection& c);

  event_base* base_;
  Resolve resolve_;
  Report report_;
  Settings settings_;
  uint64_t next_connection_ = 1;
  std::map<std::string, Destination> destinations_;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::multimap<std::string, uint64_t> idle_by_address_;  // Target::cache_key() -> connection
  std::deque<std::string> slot_waiters_;                  // destinations waiting for the global cap
  // Dispatches them on the next loop turn: a connection to their server went idle (park).
  Timer waiters_timer_;
  // Sessions that ended, freed on the next loop turn rather than inside their own callbacks.
  std::vector<std::unique_ptr<mail::ClientSession>> ended_;
  Timer reaper_;
  Shaper shaper_;
  Timer shaping_timer_;  // rate waits, suspensions that end, slow-downs that step back
  Clock::time_point shaping_due_{};
  // Shared with the sessions that will start TLS with them: a reload that brings another CA
  // file replaces verify_config_ while a session still waits for its STARTTLS.
  std::shared_ptr<tls_config> encrypt_config_;  // TLS without verification (opportunistic, encrypt)
  std::shared_ptr<tls_config> verify_config_;   // with the CA certificates
  std::string verify_problem_ = "no CA certificates yet";
  // Servers whose opportunistic TLS failed, by Target::key(), until when they are sent to in
  // the clear (Postfix keeps such a fact for its cache time too).
  std::map<std::string, Clock::time_point> tls_broken_;
  std::map<std::string, Host> hosts_;
  // Counts reloads that changed source addresses: a connection opened under an earlier count
  // takes no more mail (it leaves from an address no longer configured, or it should not).
  uint64_t sources_generation_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The result for the queue from the engine's, with the server's reply quoted in detail and how
// the connection was protected (tls: TlsFacts::to_string(), empty in the clear).
msg::DeliveryResult delivery_result(const mail::RecipientResult& r, const Target& target,
                                    const std::string& tls);

// The mta's part of the log's delays= (queue/api.hpp DeliveryResult): waiting for a
// connection, setting one up (fresh: the delivery's transaction was the connection's first),
// and the transaction itself, ending now.
void set_delays(msg::DeliveryResult& r, const Delivery& delivery, Clock::time_point opened,
                Clock::time_point ready_at, bool fresh);

// The client's waits as smtpd.yaml relay_timeouts sets them (RSET keeps the engine's).
mail::ClientTimeouts client_timeouts(const Settings& settings);

// A RCPT refused because the transaction has too many recipients (RFC 5321 4.5.3.1.10: 452,
// or 552 from servers of RFC 821's day), not because of the recipient.
bool too_many_recipients(const mail::RecipientResult& r);

}  // namespace postern::mta
