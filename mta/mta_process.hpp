// The mta process's core: takes DeliverRemote jobs from the queue through the ChildRuntime it is
// given, checks them for loops, groups each job's recipients by destination (a configured
// route, or the domain's MX hosts, both asked of lookup), hands them to the Relay (relay.hpp)
// and reports one result per recipient. Also answers smtpctl show mx and show relays.
// main.cpp only starts it. Never opens a file: the queue passes the message's descriptor.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ipc/child.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mta/api.hpp"
#include "mta/relay.hpp"

namespace postern::mta {

// At most this many addresses of a destination's servers are tried for one connection
// (Postfix's smtp_mx_address_limit is 5; a route names its own).
constexpr size_t kMaxTargets = 20;

// The first route that matches a domain, or nullptr.
const Route* matching_route(const std::vector<Route>& routes, const std::string& domain);
// The destination key of a domain: the route with servers that matches it ("route 0:" and its
// first pattern), or the domain itself (by MX). Recipients with one key share a transaction.
std::string destination_key(const std::vector<Route>& routes, const std::string& domain);
// The TLS policy of a server reached by scheme, under the route that sent mail there (nullptr:
// none): the route's own, else encrypt for smtp+tls:// and smtps://, else relay_tls.policy.
mail::TlsPolicy tls_policy(const Settings& settings, const Route* route, mail::RelayScheme scheme);
// The index of the route a key names, or nullopt for an MX destination.
std::optional<size_t> route_of(const std::string& key);

class MtaProcess {
 public:
  explicit MtaProcess(ChildRuntime& runtime);

 private:
  struct Asked {
    std::string domain;
    uint32_t control_request = 0;                        // smtpctl show mx
    std::function<void(const msg::MxAnswer&)> answered;  // a destination's resolution
  };

  void configure(Settings&& settings);
  void load_ca(msg::Incoming& in, const CaFile& m);
  void accept(msg::Incoming& in, msg::DeliverRemote&& m);
  void start(const std::shared_ptr<Job>& job);
  void report(Job& job, size_t recipient, msg::DeliveryResult result);
  void finish(Job& job);
  // The job's results gathered so far to the queue, in frames of kReportFrameBudget; the last
  // frame says whether the job is done. False when the queue could not take them.
  bool send_results(Job& job, bool last);
  static size_t report_size(const msg::DeliveryResult& r);

  // Where a destination's mail goes: a route's servers (names asked of lookup, addresses as
  // they are), or the domain's MX hosts with this server and those it prefers less dropped.
  void resolve(const std::string& key, std::function<void(Resolution)> done);
  void resolve_route(const Route& route, const std::string& key,
                     std::function<void(Resolution)> done);
  void resolve_mx(const std::string& domain, const std::function<void(Resolution)>& done);
  Resolution resolve_literal(const std::string& domain) const;
  bool ask_lookup(const msg::MxQuery& query, Asked asked);

  void show_mx(msg::Incoming& in, const msg::CtlShowMx& m);
  std::string describe_routes() const;  // smtpctl show routes
  void on_answer(msg::Incoming& in, const msg::MxAnswer& m);
  void answer_control(uint32_t request, bool ok, const std::string& text);
  void lookup_lost();

  ChildRuntime& runtime_;
  Settings settings_;
  std::unique_ptr<Relay> relay_;
  uint64_t next_job_ = 1;
  uint32_t next_request_ = 1;
  std::map<uint64_t, std::shared_ptr<Job>> jobs_;
  // Jobs whose further frames are still to come, by request id.
  std::map<uint32_t, std::shared_ptr<Job>> gathering_;
  std::map<uint32_t, Asked> asking_;
};

}  // namespace postern::mta
