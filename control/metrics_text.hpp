// The metrics families: which process counter becomes which Prometheus family (name, type,
// labels, help), the totals that keep counters going up across a child's restarts, and the
// text a scrape answers, written by prometheus-cpp's registry and text serializer. Input is
// the parent's status answer (CtlStatus), already decoded and bounded; never does I/O.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ipc/process.hpp"
#include "control/api.hpp"

namespace postern::control {

// A process as the last scrape saw it: whether it answered this time, and its counters (the
// last ones it gave, when it did not).
struct ProcessFigures {
  Role role = Role::parent;
  bool up = false;
  uint32_t restarts = 0;
  int64_t started_at = 0;
  std::map<std::string, uint64_t> counters;
};

// Folds status answers into figures that a scraper can trust: a counter a process reports
// from zero again after a restart (a new pid, or a value below the last) continues from the
// total so far, and a process that does not answer keeps its last figures, marked down.
class MetricsTotals {
 public:
  // status: one round's answer. Roles absent from it are marked down.
  void update(const msg::CtlStatus& status);
  // The parent did not answer at all: every process is marked down, figures kept.
  void mark_all_down();
  const std::vector<ProcessFigures>& processes() const { return processes_; }

 private:
  struct Carry {
    uint64_t base = 0;  // what earlier lives of the process counted
    uint64_t last = 0;  // the last value this life reported
  };
  ProcessFigures& figures_of(Role role);
  std::vector<ProcessFigures> processes_;
  std::map<std::pair<Role, std::string>, Carry> carry_;
  std::map<Role, uint32_t> pids_;
};

// The exposition text (Prometheus text format 0.0.4) of figures.
std::string metrics_text(const std::vector<ProcessFigures>& processes);

}  // namespace postern::control
