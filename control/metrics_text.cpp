// The metrics families and the exposition text; see metrics_text.hpp. The table below is the
// one place that says which process counter a family shows: docs/metrics.md lists the same.
#include "control/metrics_text.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace postern::control {
namespace {

enum class Kind : uint8_t { counter, gauge };

// One series: a process's counter, shown in a family with fixed labels. A name ending in ':'
// takes every counter under that prefix, the rest of the name being the value of `label`
// (the child bounds how many values it keeps, see ChildRuntime::count_labeled).
struct Series {
  Role role;
  std::string_view counter;
  std::string_view family;
  Kind kind;
  std::string_view help;
  prometheus::Labels labels;
  std::string_view label = {};
};

const std::vector<Series>& series_table() {
  static const std::vector<Series> kTable = {
      {Role::smtp,
       "accepted",
       "postern_smtp_connections_total",
       Kind::counter,
       "SMTP connections, by whether they were served or turned away at once (session limits).",
       {{"result", "accepted"}}},
      {Role::smtp,
       "refused",
       "postern_smtp_connections_total",
       Kind::counter,
       "",
       {{"result", "refused"}}},
      {Role::smtp, "sessions", "postern_smtp_sessions", Kind::gauge, "SMTP sessions open now.", {}},
      {Role::smtp,
       "messages",
       "postern_smtp_messages_accepted_total",
       Kind::counter,
       "Messages answered 250 at the end of DATA (durable in the queue).",
       {}},
      {Role::smtp,
       "refusal:",
       "postern_smtp_refusals_total",
       Kind::counter,
       "Negative SMTP replies (4xx and 5xx) by enhanced status code (RFC 3463), such as 5.1.1 "
       "for an unknown recipient or 5.7.1 for relaying denied.",
       {},
       "code"},
      {Role::smtp,
       "tls",
       "postern_smtp_tls_sessions_total",
       Kind::counter,
       "SMTP sessions that started TLS (STARTTLS or an smtps listener).",
       {}},
      {Role::queue,
       "queued",
       "postern_queue_messages",
       Kind::gauge,
       "Messages in the queue, by state: queued (committed, not yet done) or receiving (being "
       "written by smtp).",
       {{"state", "queued"}}},
      {Role::queue,
       "receiving",
       "postern_queue_messages",
       Kind::gauge,
       "",
       {{"state", "receiving"}}},
      {Role::queue,
       "delivering",
       "postern_queue_jobs",
       Kind::gauge,
       "Delivery jobs by lane (local: mda, remote: mta) and state (in_flight: handed over, "
       "waiting: ready for a free slot).",
       {{"lane", "local"}, {"state", "in_flight"}}},
      {Role::queue,
       "waiting",
       "postern_queue_jobs",
       Kind::gauge,
       "",
       {{"lane", "local"}, {"state", "waiting"}}},
      {Role::queue,
       "relaying",
       "postern_queue_jobs",
       Kind::gauge,
       "",
       {{"lane", "remote"}, {"state", "in_flight"}}},
      {Role::queue,
       "relay_waiting",
       "postern_queue_jobs",
       Kind::gauge,
       "",
       {{"lane", "remote"}, {"state", "waiting"}}},
      {Role::queue,
       "age:",
       "postern_queue_messages_by_age",
       Kind::gauge,
       "Messages in the queue by time since arrival: lt_5m, lt_1h, lt_4h, lt_1d, lt_5d "
       "(less than), ge_5d; each message in one bucket.",
       {},
       "age"},
      {Role::queue,
       "delivered",
       "postern_queue_recipients_total",
       Kind::counter,
       "Recipients the queue finished or retried, by outcome: delivered, deferred (retried "
       "later) or bounced.",
       {{"outcome", "delivered"}}},
      {Role::queue,
       "deferred",
       "postern_queue_recipients_total",
       Kind::counter,
       "",
       {{"outcome", "deferred"}}},
      {Role::queue,
       "bounced",
       "postern_queue_recipients_total",
       Kind::counter,
       "",
       {{"outcome", "bounced"}}},
      {Role::mda,
       "delivered",
       "postern_deliveries_total",
       Kind::counter,
       "Delivery attempts per recipient by method (local: mda, remote: mta) and status.",
       {{"method", "local"}, {"status", "delivered"}}},
      {Role::mda,
       "failed",
       "postern_deliveries_total",
       Kind::counter,
       "",
       {{"method", "local"}, {"status", "failed"}}},
      {Role::mta,
       "sent",
       "postern_deliveries_total",
       Kind::counter,
       "",
       {{"method", "remote"}, {"status", "sent"}}},
      {Role::mta,
       "deferred",
       "postern_deliveries_total",
       Kind::counter,
       "",
       {{"method", "remote"}, {"status", "deferred"}}},
      {Role::mta,
       "bounced",
       "postern_deliveries_total",
       Kind::counter,
       "",
       {{"method", "remote"}, {"status", "bounced"}}},
      {Role::mta,
       "relay_sent:",
       "postern_relay_results_total",
       Kind::counter,
       "Remote recipients by destination domain and status; the first 16 destinations seen "
       "since the mta started have their own label, the others count under \"other\".",
       {{"status", "sent"}},
       "destination"},
      {Role::mta,
       "relay_deferred:",
       "postern_relay_results_total",
       Kind::counter,
       "",
       {{"status", "deferred"}},
       "destination"},
      {Role::mta,
       "relay_bounced:",
       "postern_relay_results_total",
       Kind::counter,
       "",
       {{"status", "bounced"}},
       "destination"},
      {Role::mta,
       "sent_tls",
       "postern_relay_sent_total",
       Kind::counter,
       "Remote recipients sent, by whether the connection used TLS.",
       {{"tls", "yes"}}},
      {Role::mta, "sent_plain", "postern_relay_sent_total", Kind::counter, "", {{"tls", "no"}}},
      {Role::lookup,
       "rcpt_checks",
       "postern_lookup_recipient_checks_total",
       Kind::counter,
       "Recipients smtp asked lookup about.",
       {}},
      {Role::lookup,
       "auth_failures",
       "postern_lookup_auth_failures_total",
       Kind::counter,
       "AUTH attempts refused.",
       {}},
      {Role::control,
       "clients",
       "postern_control_clients",
       Kind::gauge,
       "smtpctl clients connected now.",
       {}},
  };
  return kTable;
}

// Latency histograms a process reports as counters: NAME:le_LE (observations up to LE seconds
// and above the bound before, not cumulative), NAME:sum_us and NAME:count.
struct HistogramSeries {
  Role role;
  std::string_view counter;  // NAME
  std::string_view family;
  std::string_view help;
  prometheus::Labels labels;
};

const std::vector<HistogramSeries>& histogram_table() {
  static const std::vector<HistogramSeries> kTable = {
      {Role::lookup,
       "dns",
       "postern_dns_answer_seconds",
       "Time from a DNS question to libunbound's answer (cached answers included).",
       {}},
      {Role::lookup,
       "mx",
       "postern_lookup_seconds",
       "Time lookup took to answer, by question: mx (an MX route for the mta), client (the "
       "checks before the greeting: rDNS, DNSBL).",
       {{"question", "mx"}}},
      {Role::lookup, "client", "postern_lookup_seconds", "", {{"question", "client"}}},
  };
  return kTable;
}

// A prometheus-cpp family is registered once per name; its help comes from the first row.
template <typename Builder, typename Family>
Family& family_of(std::map<std::string, Family*, std::less<>>& families,
                  prometheus::Registry& registry, Builder builder, std::string_view name,
                  std::string_view help) {
  auto it = families.find(name);
  if (it != families.end()) return *it->second;
  Family& f = builder.Name(std::string(name)).Help(std::string(help)).Register(registry);
  families.emplace(std::string(name), &f);
  return f;
}

std::string_view help_of(std::string_view family) {
  for (const Series& s : series_table())
    if (s.family == family && !s.help.empty()) return s.help;
  for (const HistogramSeries& h : histogram_table())
    if (h.family == family && !h.help.empty()) return h.help;
  return family;
}

const ProcessFigures* find(const std::vector<ProcessFigures>& processes, Role role) {
  for (const ProcessFigures& p : processes)
    if (p.role == role) return &p;
  return nullptr;
}

void add_histogram(prometheus::Family<prometheus::Histogram>& family, const HistogramSeries& h,
                   const ProcessFigures& p) {
  const std::string bucket_prefix = std::string(h.counter) + ":le_";
  std::vector<std::pair<double, uint64_t>> buckets;
  for (auto it = p.counters.lower_bound(bucket_prefix);
       it != p.counters.end() && it->first.starts_with(bucket_prefix); ++it) {
    char* end = nullptr;
    const std::string le = it->first.substr(bucket_prefix.size());
    const double bound = std::strtod(le.c_str(), &end);
    if (end == le.c_str() || *end != '\0') continue;
    buckets.emplace_back(bound, it->second);
  }
  const auto count = p.counters.find(std::string(h.counter) + ":count");
  const auto sum = p.counters.find(std::string(h.counter) + ":sum_us");
  if (count == p.counters.end() || sum == p.counters.end() || buckets.empty()) return;
  std::sort(buckets.begin(), buckets.end());
  prometheus::Histogram::BucketBoundaries bounds;
  std::vector<double> increments;
  uint64_t in_buckets = 0;
  for (const auto& [bound, n] : buckets) {
    bounds.push_back(bound);
    increments.push_back(static_cast<double>(n));
    in_buckets += n;
  }
  // The rest fell above the last bound (+Inf).
  increments.push_back(
      static_cast<double>(count->second > in_buckets ? count->second - in_buckets : 0));
  family.Add(h.labels, bounds).ObserveMultiple(increments, static_cast<double>(sum->second) / 1e6);
}

}  // namespace

ProcessFigures& MetricsTotals::figures_of(Role role) {
  for (ProcessFigures& p : processes_)
    if (p.role == role) return p;
  processes_.push_back({.role = role});
  return processes_.back();
}

void MetricsTotals::update(const msg::CtlStatus& status) {
  for (ProcessFigures& p : processes_) p.up = false;
  for (const msg::ProcessStatus& s : status.processes) {
    ProcessFigures& p = figures_of(s.role);
    p.restarts = s.restarts;
    p.started_at = s.started_at;
    if (!s.answered || s.pid == 0) continue;
    p.up = true;
    const bool new_life = pids_[s.role] != s.pid;
    pids_[s.role] = s.pid;
    for (const msg::Counter& c : s.counters) {
      Carry& carry = carry_[{s.role, c.name}];
      if (new_life || c.value < carry.last) carry.base += carry.last;
      carry.last = c.value;
      p.counters[c.name] = carry.base + c.value;
    }
  }
}

void MetricsTotals::mark_all_down() {
  for (ProcessFigures& p : processes_) p.up = false;
}

std::string metrics_text(const std::vector<ProcessFigures>& processes) {
  prometheus::Registry registry;
  auto& up = prometheus::BuildGauge()
                 .Name("postern_up")
                 .Help(
                     "1 when the process answered this scrape; 0 when it did not (down, "
                     "restarting or too slow): its other figures are then the last it gave.")
                 .Register(registry);
  auto& restarts = prometheus::BuildCounter()
                       .Name("postern_process_restarts_total")
                       .Help("Times the parent restarted a child process since smtpd started.")
                       .Register(registry);
  auto& started = prometheus::BuildGauge()
                      .Name("postern_process_start_time_seconds")
                      .Help("When the process last started, in seconds since the epoch.")
                      .Register(registry);
  for (const ProcessFigures& p : processes) {
    const prometheus::Labels process{{"process", std::string(role_name(p.role))}};
    up.Add(process).Set(p.up ? 1 : 0);
    if (p.role != Role::parent) restarts.Add(process).Increment(static_cast<double>(p.restarts));
    if (p.started_at > 0) started.Add(process).Set(static_cast<double>(p.started_at));
  }

  std::map<std::string, prometheus::Family<prometheus::Counter>*, std::less<>> counters;
  std::map<std::string, prometheus::Family<prometheus::Gauge>*, std::less<>> gauges;
  for (const Series& s : series_table()) {
    const ProcessFigures* p = find(processes, s.role);
    if (p == nullptr) continue;
    auto add = [&](const prometheus::Labels& labels, uint64_t value) {
      if (s.kind == Kind::counter) {
        family_of(counters, registry, prometheus::BuildCounter(), s.family, help_of(s.family))
            .Add(labels)
            .Increment(static_cast<double>(value));
      } else {
        family_of(gauges, registry, prometheus::BuildGauge(), s.family, help_of(s.family))
            .Add(labels)
            .Set(static_cast<double>(value));
      }
    };
    if (!s.counter.ends_with(':')) {
      if (auto it = p->counters.find(std::string(s.counter)); it != p->counters.end())
        add(s.labels, it->second);
      continue;
    }
    const std::string prefix(s.counter);
    for (auto it = p->counters.lower_bound(prefix);
         it != p->counters.end() && it->first.starts_with(prefix); ++it) {
      prometheus::Labels labels = s.labels;
      labels[std::string(s.label)] = it->first.substr(prefix.size());
      add(labels, it->second);
    }
  }

  std::map<std::string, prometheus::Family<prometheus::Histogram>*, std::less<>> histograms;
  for (const HistogramSeries& h : histogram_table()) {
    const ProcessFigures* p = find(processes, h.role);
    if (p == nullptr) continue;
    add_histogram(
        family_of(histograms, registry, prometheus::BuildHistogram(), h.family, help_of(h.family)),
        h, *p);
  }
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace postern::control
