// The lookup process's core: answers the other processes' questions about DNS, tables, aliases
// and credentials through the ChildRuntime it is given, asynchronously, by request id.
// main.cpp only starts it.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/ipc/child.hpp"
#include "common/util/log.hpp"
#include "common/util/worker.hpp"
#include "lookup/api.hpp"
#include "lookup/client_checks.hpp"
#include "lookup/credentials.hpp"
#include "lookup/dns.hpp"
#include "lookup/recipients.hpp"
#include "lookup/relay_policy.hpp"
#include "lookup/throttle.hpp"

namespace postern::lookup {

using Clock = std::chrono::steady_clock;

// How long a kind of question took: for smtpctl show stats.
struct Latency {
  uint64_t count = 0;
  uint64_t total_us = 0;
  uint64_t max_us = 0;
  void add(Clock::time_point started) {
    const auto us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
    ++count;
    total_us += us;
    if (us > max_us) max_us = us;
    ++buckets[dns::latency_bucket(us)];
  }
  std::array<uint64_t, dns::kLatencyBoundsUs.size() + 1> buckets{};
  std::string to_string() const { return std::to_string(count) + ", " + times(); }
  std::string times() const {
    char text[80];
    std::snprintf(text, sizeof text, "%.2f ms on average, %.2f ms at most",
                  count ? static_cast<double>(total_us) / static_cast<double>(count) / 1000 : 0.0,
                  static_cast<double>(max_us) / 1000);
    return text;
  }
};

// A client being checked: its listener's checks are copied, so a reload meanwhile is harmless.
struct CheckInFlight {
  ClientChecks checks;
  std::unique_ptr<ClientCheck> check;
  uint32_t request_id = 0;
  Clock::time_point started;
  uint32_t delay_ms = 0;  // the greeting's delay for connecting too often
};

// An SMTP session as lookup saw it (docs/privsep.md, "Relay check"): the addresses it read
// from the connection smtp handed over, and the user whose password it checked itself.
struct VerifiedSession {
  std::string client_address;  // getpeername, written as smtp writes it (inet::address_text)
  std::string local_address;   // getsockname: where the listener took the connection
  std::string listener;        // smtp's name for that listener
  std::string auth_user;       // empty until lookup accepted this session's AUTH
};

// An AUTH attempt whose password is being hashed on the worker thread.
struct PasswordCheck {
  std::shared_ptr<const CredentialTable> table;  // a reload meanwhile changes nothing here
  std::string user;
  std::string password;  // wiped on the worker thread once checked
  std::string client_address;
  Role asker = Role::smtp;
  uint32_t request_id = 0;
  uint64_t session = 0;
  bool accepted = false;
};

// A ResolveLocal waiting for the parent to open ~/.forward files (resolve_local.cpp).
struct HeldResolve {
  Role from = Role::mda;
  uint32_t request_id = 0;
  std::vector<std::string> addresses;
  Clock::time_point since;
};

class LookupProcess {
 public:
  explicit LookupProcess(ChildRuntime& runtime);

 private:
  template <typename M>
  void answer(Role to, uint32_t request_id, const M& verdict) {
    ipc::Channel* asker = runtime_.peer(to);
    if (asker == nullptr || !msg::send(*asker, verdict, request_id))
      log::warn("cannot answer %s", std::string(role_name(to)).c_str());
  }
  template <typename M>
  void answer(msg::Incoming& in, const M& verdict) {
    answer(in.from, in.request_id, verdict);
  }

  void configure(const Settings& m);
  const VerifiedSession* find_session(uint64_t id) const;

  // The connection's own addresses, read here from the descriptor, then closed. A descriptor
  // that is not a connected TCP socket registers nothing (the session cannot relay).
  void open_session(msg::Incoming& in, const msg::SessionOpen& m);

  void close_session(uint64_t id);
  void forget_sessions();

  // May this session send to any domain? Its user authenticated with lookup, or it comes
  // from a trusted network and trusted_networks_relay allows those to relay.
  bool relays_anywhere(const VerifiedSession& session) const;
  bool trusted(const sockaddr* client) const;

  // The queue asks before it commits a message with a recipient outside the local domains:
  // the envelope smtp wrote must say what lookup saw, every remote domain must be one this
  // session may send to, and an authenticated user must own the sender.
  void check_relay(msg::Incoming& in, const msg::RelayCheck& m);

  // smtp asks at MAIL FROM in a session that authenticated.
  void check_sender(msg::Incoming& in, const msg::SenderCheck& m);

  // Before smtp greets a client. Without a resolver every client passes (fail-open).
  void check_client(msg::Incoming& in, const msg::ClientCheck& m);

  void checked(uint64_t id, ClientVerdict v);
  void find_mx(msg::Incoming& in, const msg::MxQuery& m);
  void answer_mx(Role asker, uint32_t request, dns::MxRoute route);
  void show_stats(msg::Incoming& in);
  void count_latencies();

  // Aliases and virtual users: a table with any error is refused whole, the one in use kept.
  Status load_routing_table(msg::TableKind kind, const std::string& name, int fd);

  // Every address's route, in order, in as many frames as they take (resolve_local.cpp).
  // mda asks before it delivers; the parent asks again before it starts a delivery helper.
  // A route through a system user's ~/.forward that lookup has not read waits for the parent
  // to open it (ForwardOpen): the request is held, and answered once the files are known.
  void resolve_local(msg::Incoming& in, const msg::ResolveLocal& m);
  void resolve_or_hold(HeldResolve request);
  void send_routes(const HeldResolve& request, const std::vector<msg::LocalRoute>& routes);
  void ask_forward(const std::string& user);
  void forward_answered(msg::Incoming& in, const msg::ForwardFile& m);
  void forwards_timed_out();
  void retry_held_resolves();

  // A table with any error is refused whole and the one in use is kept.
  Status load_credentials(const std::string& name, int fd);
  Status load_senders(const std::string& name, int fd);

  void refuse_throttled(Role asker, uint32_t request_id, const std::string& client,
                        const std::string& user);
  // The hash is computed on the worker thread (a yescrypt check takes tens of milliseconds);
  // the throttle is consulted before, so a refused client costs no hashing and a delay is
  // served whatever the password (AuthThrottle), and again after, so that attempts sent in
  // parallel learn nothing once their failures add up.
  void check_credentials(msg::Incoming& in, const msg::AuthCheck& m);

  // Held checks whose delay is over go to be hashed.
  void release_held_checks();

  void arm_release();

  // On the worker thread.
  static void verify_passwords(std::vector<std::unique_ptr<PasswordCheck>>& batch);

  // Back on the event loop.
  void password_checked(PasswordCheck& job);

  ChildRuntime& runtime_;
  LocalRouter router_;
  RelayDomains relay_domains_;
  RecipientPolicy policy_{router_, &relay_domains_};
  SenderPolicy senders_;
  bool trusted_relay_ = false;                          // trusted_networks_relay
  std::shared_ptr<const CredentialTable> credentials_;  // shared with checks in progress
  AuthThrottle auth_throttle_;
  // AUTH checks waiting out a delay before they are hashed, by when they may go.
  std::multimap<Clock::time_point, std::unique_ptr<PasswordCheck>> held_checks_;
  Timer release_timer_{runtime_.base(), [this] { release_held_checks(); }};
  std::vector<HeldResolve> held_resolves_;
  // ForwardOpen requests to the parent, by request id: the user and when it was asked.
  std::map<uint32_t, std::pair<std::string, Clock::time_point>> forwards_asked_;
  uint32_t next_forward_request_ = 1;
  Timer forward_timer_{runtime_.base(), [this] { forwards_timed_out(); }};
  uint64_t rcpt_checks_ = 0;
  uint64_t rcpt_known_ = 0;
  uint64_t rcpt_unknown_ = 0;
  uint64_t auth_failures_ = 0;
  std::map<uint64_t, VerifiedSession> sessions_;  // by smtp's session id
  // DNS and the client checks.
  Dns dns_;
  std::vector<inet::Network> trusted_;
  std::map<std::string, ClientChecks> checks_;  // by listener name
  std::unique_ptr<dns::Resolver> resolver_;     // declared before in_flight_: outlives its checks
  std::map<uint64_t, std::unique_ptr<CheckInFlight>> in_flight_;
  uint64_t next_check_ = 1;
  uint64_t clients_passed_ = 0;
  uint64_t clients_tagged_ = 0;
  uint64_t clients_refused_ = 0;
  ConnectionRate connection_rate_{0};  // the limit comes with the configuration
  uint64_t clients_rate_delayed_ = 0;
  uint64_t clients_rate_refused_ = 0;
  Latency client_latency_;
  Latency mx_latency_;
  // Last: its thread must stop before anything its jobs' callbacks use goes away.
  BatchWorker<PasswordCheck> password_checks_{
      runtime_.base(), &LookupProcess::verify_passwords,
      [this](PasswordCheck& job) { password_checked(job); }};
};

}  // namespace postern::lookup
