// The metrics families written from status answers: names, types, labels, help, histograms,
// and totals that keep going up when a child restarts or stops answering.
#include "control/metrics_text.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::control {
namespace {

msg::ProcessStatus process(Role role, uint32_t pid, std::vector<msg::Counter> counters,
                           bool answered = true, uint32_t restarts = 0) {
  msg::ProcessStatus p;
  p.role = role;
  p.pid = pid;
  p.started_at = 1700000000;
  p.restarts = restarts;
  p.counters = std::move(counters);
  p.answered = answered;
  return p;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.starts_with(line + "\n");
}

TEST(MetricsText, FamiliesCarryTypeHelpAndLabels) {
  MetricsTotals totals;
  msg::CtlStatus status;
  status.processes = {
      process(Role::parent, 1, {{"listeners", 2}}),
      process(Role::smtp, 10,
              {{"accepted", 5},
               {"refused", 1},
               {"sessions", 2},
               {"messages", 3},
               {"refusal:5.1.1", 4},
               {"tls", 1}}),
      process(Role::mda, 11, {{"delivered", 3}, {"failed", 0}}),
      process(Role::mta, 12, {{"sent", 2}, {"relay_sent:example.org", 2}, {"sent_tls", 1}}),
      process(Role::queue, 13, {{"queued", 7}, {"age:lt_5m", 6}, {"age:ge_5d", 1}}),
  };
  totals.update(status);
  const std::string text = metrics_text(totals.processes());
  EXPECT_TRUE(has_line(text, "# TYPE postern_smtp_connections_total counter")) << text;
  EXPECT_TRUE(has_line(text, "postern_smtp_connections_total{result=\"accepted\"} 5")) << text;
  EXPECT_TRUE(has_line(text, "postern_smtp_connections_total{result=\"refused\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE postern_smtp_sessions gauge")) << text;
  EXPECT_TRUE(has_line(text, "postern_smtp_messages_accepted_total 3")) << text;
  EXPECT_TRUE(has_line(text, "postern_smtp_refusals_total{code=\"5.1.1\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "postern_deliveries_total{method=\"local\",status=\"delivered\"} 3"))
      << text;
  EXPECT_TRUE(has_line(text, "postern_deliveries_total{method=\"remote\",status=\"sent\"} 2"))
      << text;
  EXPECT_TRUE(
      has_line(text, "postern_relay_results_total{destination=\"example.org\",status=\"sent\"} 2"))
      << text;
  EXPECT_TRUE(has_line(text, "postern_queue_messages{state=\"queued\"} 7")) << text;
  EXPECT_TRUE(has_line(text, "postern_queue_messages_by_age{age=\"lt_5m\"} 6")) << text;
  EXPECT_TRUE(has_line(text, "postern_up{process=\"smtp\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "postern_process_restarts_total{process=\"smtp\"} 0")) << text;
  // Every family has its help text, and every name is ours.
  size_t families = 0;
  for (size_t at = text.find("# TYPE "); at != std::string::npos;
       at = text.find("# TYPE ", at + 1)) {
    ++families;
    const size_t end = text.find(' ', at + 7);
    const std::string name = text.substr(at + 7, end - at - 7);
    EXPECT_TRUE(name.starts_with("postern_")) << name;
    EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
  }
  EXPECT_GT(families, 10u);
}

TEST(MetricsText, CountersGoOnAcrossARestartAndStayWhenAProcessIsSilent) {
  MetricsTotals totals;
  msg::CtlStatus status;
  status.processes = {process(Role::mda, 11, {{"delivered", 5}})};
  totals.update(status);
  // Restarted (new pid, counting from zero again), then counting on.
  status.processes = {process(Role::mda, 22, {{"delivered", 1}}, true, 1)};
  totals.update(status);
  std::string text = metrics_text(totals.processes());
  EXPECT_TRUE(has_line(text, "postern_deliveries_total{method=\"local\",status=\"delivered\"} 6"))
      << text;
  EXPECT_TRUE(has_line(text, "postern_process_restarts_total{process=\"mda\"} 1")) << text;
  status.processes = {process(Role::mda, 22, {{"delivered", 3}}, true, 1)};
  totals.update(status);
  // Silent this round: the last figures, and up 0.
  status.processes = {process(Role::mda, 22, {}, false, 1)};
  totals.update(status);
  text = metrics_text(totals.processes());
  EXPECT_TRUE(has_line(text, "postern_deliveries_total{method=\"local\",status=\"delivered\"} 8"))
      << text;
  EXPECT_TRUE(has_line(text, "postern_up{process=\"mda\"} 0")) << text;
  totals.mark_all_down();
  EXPECT_TRUE(has_line(metrics_text(totals.processes()), "postern_up{process=\"mda\"} 0"));
}

TEST(MetricsText, LatencyBucketsBecomeAHistogram) {
  MetricsTotals totals;
  msg::CtlStatus status;
  status.processes = {process(Role::lookup, 14,
                              {{"dns:le_0.001", 2},
                               {"dns:le_0.01", 1},
                               {"dns:le_1", 0},
                               {"dns:sum_us", 2500},
                               {"dns:count", 4}})};
  totals.update(status);
  const std::string text = metrics_text(totals.processes());
  EXPECT_TRUE(has_line(text, "# TYPE postern_dns_answer_seconds histogram")) << text;
  EXPECT_TRUE(has_line(text, "postern_dns_answer_seconds_bucket{le=\"0.001\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "postern_dns_answer_seconds_bucket{le=\"0.01\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "postern_dns_answer_seconds_bucket{le=\"1\"} 3")) << text;
  // One answer fell above the last bound.
  EXPECT_TRUE(has_line(text, "postern_dns_answer_seconds_bucket{le=\"+Inf\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "postern_dns_answer_seconds_count 4")) << text;
  EXPECT_TRUE(has_line(text, "postern_dns_answer_seconds_sum 0.0025")) << text;
}

TEST(MetricsText, LabelValuesAreEscaped) {
  MetricsTotals totals;
  msg::CtlStatus status;
  status.processes = {process(Role::mta, 12, {{"relay_bounced:a\"b\\c\nd", 1}})};
  totals.update(status);
  const std::string text = metrics_text(totals.processes());
  EXPECT_TRUE(has_line(
      text, "postern_relay_results_total{destination=\"a\\\"b\\\\c\\nd\",status=\"bounced\"} 1"))
      << text;
}

}  // namespace
}  // namespace postern::control
