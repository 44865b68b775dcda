// The metrics endpoint; see metrics_server.hpp. Scrapers are strangers: whatever they send or
// fail to read closes their connection, never the process, and never holds a figure back.
#include "control/metrics_server.hpp"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <algorithm>
#include <cstring>

#include "common/util/log.hpp"

namespace postern::control {

MetricsServer::MetricsServer(event_base* base, UniqueFd listen_fd, AskStatus ask_status)
    : ask_status_(std::move(ask_status)),
      http_(evhttp_new(base), &evhttp_free),
      recheck_(base, [this] { forget_closed_connections(); }),
      round_timeout_(base, [this] {
        log::warn(
            "metrics: no status from the parent within %lld ms; answering with the last "
            "figures",
            static_cast<long long>(kScrapeWait.count()));
        round_.reset();
        totals_.mark_all_down();
        answer_waiting();
      }) {
  if (!http_) log::fatal("metrics: cannot create the HTTP server");
  evhttp_set_max_headers_size(http_.get(), kMaxMetricsHeaders);
  evhttp_set_max_body_size(http_.get(), kMaxMetricsBody);
  evhttp_set_timeout(http_.get(), kMetricsTimeoutSeconds);
  evhttp_set_allowed_methods(http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
  evhttp_set_gencb(http_.get(), &MetricsServer::on_request, this);
  evhttp_set_bevcb(http_.get(), &MetricsServer::on_new_connection, this);
  evhttp_bound_socket* bound = evhttp_accept_socket_with_handle(http_.get(), listen_fd.get());
  if (bound == nullptr) log::fatal("metrics: cannot serve the socket the parent bound");
  static_cast<void>(listen_fd.release());  // evhttp closes it
  listener_ = evhttp_bound_socket_get_listener(bound);
}

MetricsServer::~MetricsServer() {
  http_.reset();  // frees every connection (and its requests) first
  for (bufferevent* bev : connections_) bufferevent_decref(bev);
}

// evhttp has no limit on connections, but lets us make each one's bufferevent. Holding a
// reference to it shows when evhttp is done with the connection: its bufferevent_free clears
// the callbacks (evhttp keeps an event callback set for as long as it uses one) after it
// shut the socket down; our last reference then closes the socket.
bufferevent* MetricsServer::on_new_connection(event_base* base, void* arg) {
  auto* self = static_cast<MetricsServer*>(arg);
  self->forget_closed_connections();
  bufferevent* bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) return nullptr;  // evhttp makes its own; uncounted, but served
  bufferevent_incref(bev);
  self->connections_.push_back(bev);
  if (self->connections_.size() >= kMaxMetricsConnections) evconnlistener_disable(self->listener_);
  self->recheck_.arm(kRecheck);
  return bev;
}

void MetricsServer::forget_closed_connections() {
  std::erase_if(connections_, [](bufferevent* bev) {
    bufferevent_event_cb event_cb = nullptr;
    bufferevent_getcb(bev, nullptr, nullptr, &event_cb, nullptr);
    if (event_cb != nullptr) return false;
    bufferevent_decref(bev);
    return true;
  });
  if (connections_.size() < kMaxMetricsConnections) evconnlistener_enable(listener_);
  if (!connections_.empty()) recheck_.arm(kRecheck);
}

void MetricsServer::on_request(evhttp_request* request, void* self) {
  static_cast<MetricsServer*>(self)->handle(request);
}

void MetricsServer::handle(evhttp_request* request) {
  const char* path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(request));
  if (path == nullptr || (std::strcmp(path, "/metrics") != 0 && std::strcmp(path, "/") != 0)) {
    evhttp_send_error(request, HTTP_NOTFOUND, "the metrics are at /metrics");
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (!round_ && have_round_ && now - last_round_ < kFreshFor) {
    answer(request);
    return;
  }
  evhttp_connection* connection = evhttp_request_get_connection(request);
  evhttp_connection_set_closecb(connection, &MetricsServer::on_connection_closed, this);
  waiting_.push_back({request, connection});
  if (round_) return;
  round_ = ask_status_();
  if (!round_) {
    totals_.mark_all_down();
    answer_waiting();
    return;
  }
  round_timeout_.arm(kScrapeWait);
}

// The scraper went away while its answer waited: the request is freed after this returns.
void MetricsServer::on_connection_closed(evhttp_connection* connection, void* arg) {
  auto* self = static_cast<MetricsServer*>(arg);
  std::erase_if(self->waiting_,
                [connection](const Waiting& w) { return w.connection == connection; });
}

bool MetricsServer::on_status(uint32_t request_id, const msg::CtlStatus& status) {
  if (!round_ || *round_ != request_id) return false;
  round_.reset();
  round_timeout_.cancel();
  totals_.update(status);
  have_round_ = true;
  last_round_ = std::chrono::steady_clock::now();
  answer_waiting();
  return true;
}

void MetricsServer::answer_waiting() {
  std::vector<Waiting> waiting = std::move(waiting_);
  waiting_.clear();
  for (const Waiting& w : waiting) {
    evhttp_connection_set_closecb(w.connection, nullptr, nullptr);
    answer(w.request);
  }
}

void MetricsServer::answer(evhttp_request* request) {
  const std::string text = metrics_text(totals_.processes());
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  std::unique_ptr<evbuffer, decltype(&evbuffer_free)> body(evbuffer_new(), &evbuffer_free);
  if (!body || evbuffer_add(body.get(), text.data(), text.size()) != 0) {
    evhttp_send_error(request, HTTP_INTERNAL, nullptr);
    return;
  }
  evhttp_send_reply(request, HTTP_OK, "OK", body.get());
}

}  // namespace postern::control
