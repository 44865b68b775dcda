// Traffic shaping: which site a destination belongs to (smtpd.yaml `shaping:` rules, by domain
// or by MX host), each site's budget (a token bucket of messages a minute, connections,
// messages a connection, recipients a transaction), and the reply rules that suspend or slow a
// site when its servers say so, then let it recover step by step. Pure bookkeeping with an
// injectable clock: Relay (relay.hpp) asks it before each transaction and tells it each reply.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/mail/client.hpp"
#include "mta/api.hpp"

namespace postern::mta {

using Clock = std::chrono::steady_clock;

// Messages a minute, smoothed: it holds at most a second's worth (at least one), so a site
// never gets more than its rate plus that in any minute.
class TokenBucket {
 public:
  // per_minute 0: unlimited.
  void configure(uint32_t per_minute, Clock::time_point now);
  uint32_t rate() const { return per_minute_; }
  // Zero when a token was taken; otherwise how long until one is there (nothing taken).
  Clock::duration take(Clock::time_point now);
  Clock::duration wait(Clock::time_point now) const;  // the same, without taking
  // Empties it: after a server said "too fast", the next message waits its turn rather than
  // going out at once with those saved up while the server was refusing.
  void drain(Clock::time_point now);

 private:
  double tokens_at(Clock::time_point now) const;
  void refill(Clock::time_point now);
  uint32_t per_minute_ = 0;
  double tokens_ = 0;
  double capacity_ = 1;
  Clock::time_point last_{};
};

struct SiteLimits {
  uint32_t rate = 0;  // messages a minute; 0: unlimited
  uint32_t connections = 20;
  uint32_t messages_per_connection = 100;
  uint32_t recipients = msg::kLocalRecipientsPerJob;
};

class Shaper {
 public:
  using Now = std::function<Clock::time_point()>;
  explicit Shaper(Now now = [] { return Clock::now(); });

  // New settings: each site's configured limits again; suspensions and slow-downs stay.
  void configure(const Settings& settings);
  // The site of a destination: the first shaping rule whose `match` names its domain (for a
  // route, the route's first pattern) or whose `mx` names its most preferred server
  // ("shaping N (first pattern)"); else the destination itself.
  std::string site_of(std::string_view domain, std::string_view mx_host,
                      const std::string& destination) const;
  // The shaping rule a site of site_of stands for; nullptr for a destination of its own.
  const Shaping* rule(const std::string& site) const { return rule_of(site); }

  // May the site start a transaction now? go takes a token; wait: not now, try again after
  // delay; defer: the site is suspended, or has no room within rate_hold (delay: until when).
  struct Gate {
    enum class Kind : uint8_t { go, wait, defer } kind = Kind::go;
    Clock::duration delay{};
    std::string why;  // defer: for the result's detail
  };
  Gate admit(const std::string& name);
  Gate peek(const std::string& name);          // the same without taking a token
  SiteLimits limits(const std::string& name);  // as they are now (lowered by a slow-down)
  SiteLimits configured(const std::string& name) const;

  // A message one of the site's servers accepted: what the site takes is measured from these.
  void delivered(const std::string& name);

  // A reply from one of the site's servers. Postern's own failures (code 0) are ignored.
  // open: for a connection refused, the site's connections the server had let in (0: not
  // known); a slow_connections rule lowers the site to that many rather than to half.
  struct Observed {
    bool matched = false;    // some rule counted it
    bool triggered = false;  // and acted on the site
    ReplyAction action = ReplyAction::slow_rate;
  };
  Observed observe(const std::string& name, const mail::RecipientResult& reply,
                   std::string_view server, size_t open = 0);
  // Suspensions that ended and slow-downs that step back; true while some site is altered.
  bool tick();
  // For smtpctl show relays: the site's limits now and configured, suspension and time left.
  std::string describe(const std::string& name) const;
  std::vector<std::string> altered() const;  // sites suspended or slowed now

 private:
  struct Site {
    TokenBucket bucket;
    SiteLimits configured;
    SiteLimits current;
    Clock::time_point suspended_until{};
    std::string suspended_by;
    bool slowed = false;
    Clock::time_point rate_lowered_at{};  // the last slow-down of each kind
    Clock::time_point connections_lowered_at{};
    Clock::time_point hold_until{};  // a slow-down holds until then, then steps back
    Clock::time_point next_step{};
    uint32_t recover = 60;
    uint32_t rate_target = 0;  // what a slowed unlimited rate climbs back to, then is lifted
    std::string slowed_by;
    std::map<size_t, std::deque<Clock::time_point>> hits;  // per reply rule, within its window
    std::deque<Clock::time_point> started;                 // transactions in the last minute
    std::deque<Clock::time_point> accepted;                // messages accepted, last minute
  };
  Site& site(const std::string& name);
  const Shaping* rule_of(const std::string& name) const;
  SiteLimits configured_for(const Shaping* rule) const;
  // False when a slow-down was not applied again so soon after the last of its kind.
  bool trigger(const std::string& name, Site& s, const ReplyRule& rule, Clock::time_point now,
               size_t open, const std::string& cause);
  // A rate a minute for a site that was told to slow down: a little under what its servers
  // accepted lately (a limited rate: by at most 30%), or half of what it tried, or of its
  // rate, when too little was accepted to tell.
  static uint32_t lowered_rate(Site& s, Clock::time_point now);
  bool matches(const ReplyRule& rule, const mail::RecipientResult& reply) const;

  Now now_;
  Settings settings_;
  std::map<std::string, Site> sites_;
};

}  // namespace postern::mta
