// smtpctl's views of the queue: show queue (a list or, as Postfix's qshape, the shape: messages
// per destination domain and age), show envelope and show message (the bytes in the spool), in
// text for people or JSON lines for scripts (docs/smtpctl-json.md). Each answer is one page,
// bounded, so that neither the queue nor control holds a whole listing of a large queue; smtpctl
// asks for the next page itself. Reads the scheduler's messages and the spool; changes nothing.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/mail/envelope.hpp"
#include "control/api.hpp"
#include "queue/scheduler.hpp"
#include "queue/spool.hpp"

namespace postern::queue {

// Text per page (show queue, show message). A page's pieces each fit a CtlText frame; one
// message's recipients are never split, so a message with thousands of them makes a longer page.
constexpr size_t kPageBytes = 16 * 1024;
// Messages looked at per page: a filter that matches few messages of a large queue answers
// in several short pages rather than in one long pause of the queue's loop.
constexpr size_t kPageScan = 10000;

// One answer to control: pieces of text that each fit a CtlText frame, then the result.
struct Page {
  std::vector<std::string> pieces;
  msg::CtlResult result;
  size_t bytes = 0;
  void append(std::string_view text);
};

// True when every filter of the request holds for the message (messages with a recipient that
// matches the recipient, domain and state filters together).
bool matches(const Envelope& e, const msg::CtlShowQueue& q, int64_t now);

// The shape's age columns (minutes, as qshape's default): a message younger than 5 minutes
// counts in the first, one of 1280 minutes or more in the last.
constexpr std::array<uint32_t, 9> kShapeLimits = {5, 10, 20, 40, 80, 160, 320, 640, 1280};
constexpr size_t kShapeColumns = kShapeLimits.size() + 1;
size_t shape_column(int64_t age_seconds);
// Domains in a shape: the rest are counted together as "(other domains)".
constexpr size_t kMaxShapeDomains = 10000;

// "2026-12-07 01:02:03 UTC"; "-" for 0.
std::string utc_time(int64_t unix_seconds);
// "45s", "12m", "3h", "2d".
std::string age_text(int64_t seconds);
const char* state_name(RecipientState s);

class Views {
 public:
  Views(const Scheduler& scheduler, Spool& spool) : scheduler_(scheduler), spool_(spool) {}

  Page list(const msg::CtlShowQueue& q, int64_t now) const;
  Page shape(const msg::CtlShowQueue& q, int64_t now) const;
  Page envelope(const msg::CtlShowMessage& m, int64_t now) const;
  Page data(const msg::CtlShowMessage& m) const;

 private:
  // Why a pending recipient waits: "delivering" (at mda or mta), "held" (by smtpctl pause
  // envelope|domain), "paused" (its process's deliveries are), "retry" (until then) or "due".
  struct Wait {
    const char* kind = "due";
    std::string resume;  // what lets it go: "resume mta", "resume envelope ID"...
    int64_t until = 0;
  };
  Wait wait_of(const Envelope& e, const Recipient& r, int64_t now) const;
  // The queued message, or null with page's result saying there is none.
  const Envelope* find(const std::string& id, Page& page) const;
  std::string list_text(const Envelope& e, int64_t now) const;
  std::string list_json(const Envelope& e, int64_t now, bool full) const;

  const Scheduler& scheduler_;
  Spool& spool_;
};

}  // namespace postern::queue
