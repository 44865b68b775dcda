// The metrics endpoint: HTTP (libevent's evhttp) on the listening socket the parent bound,
// on control's own event loop. A scrape asks the parent for one status round (the same one
// smtpctl show status uses) and answers when it comes or after kScrapeWait, whichever is
// first; it never waits on another process longer. Bounded: connections at once, request
// headers and body, idle and slow connections (evhttp's timeout).
#pragma once

#include <event2/bufferevent.h>
#include <event2/http.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "control/metrics_text.hpp"

namespace postern::control {

// How long a scrape waits for the parent's status round (which itself gives the children
// one second, smtpd/supervisor.hpp kStatusTimeout).
constexpr std::chrono::milliseconds kScrapeWait{2000};
// A round this recent answers the next scrape without asking again.
constexpr std::chrono::milliseconds kFreshFor{500};
// Connections at once; beyond it the socket is not accepted from until one closes (the
// kernel's backlog holds the rest).
constexpr size_t kMaxMetricsConnections = 16;
// How often connections evhttp is done with are looked for (and their sockets closed).
constexpr std::chrono::milliseconds kRecheck{200};
// A request is a GET line and a few headers.
constexpr ssize_t kMaxMetricsHeaders = 8192;
constexpr ssize_t kMaxMetricsBody = 0;
// A connection idle, or not reading our answer, this long is closed.
constexpr int kMetricsTimeoutSeconds = 10;

class MetricsServer {
 public:
  // ask_status sends the parent a status request and returns its request id, or nothing when
  // the parent's channel refused it.
  using AskStatus = std::function<std::optional<uint32_t>()>;
  MetricsServer(event_base* base, UniqueFd listen_fd, AskStatus ask_status);
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  ~MetricsServer();

  // True when request_id is a round this server asked for; status is then consumed.
  bool on_status(uint32_t request_id, const msg::CtlStatus& status);

 private:
  struct Waiting {
    evhttp_request* request;
    evhttp_connection* connection;
  };
  static void on_request(evhttp_request* request, void* self);
  static void on_connection_closed(evhttp_connection* connection, void* arg);
  static bufferevent* on_new_connection(event_base* base, void* arg);
  void handle(evhttp_request* request);
  void answer_waiting();
  void answer(evhttp_request* request);
  void forget_closed_connections();

  AskStatus ask_status_;
  std::unique_ptr<evhttp, decltype(&evhttp_free)> http_;
  evconnlistener* listener_ = nullptr;     // owned by http_
  std::vector<bufferevent*> connections_;  // one reference each (see on_new_connection)
  Timer recheck_;
  std::vector<Waiting> waiting_;
  std::optional<uint32_t> round_;  // asked, not yet answered
  Timer round_timeout_;
  std::chrono::steady_clock::time_point last_round_{};
  bool have_round_ = false;
  MetricsTotals totals_;
};

}  // namespace postern::control
