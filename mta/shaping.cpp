// Sites, their budgets and the reply rules; see shaping.hpp.
#include "mta/shaping.hpp"

#include <algorithm>
#include <cstdio>

#include "common/mail/route.hpp"
#include "common/util/ascii.hpp"
#include "common/util/log.hpp"
#include "mta/relay_log.hpp"

namespace postern::mta {
namespace {

constexpr std::string_view kSitePrefix = "shaping ";
// Sites with nothing to remember are forgotten past this many (every domain mail went to).
constexpr size_t kMaxSites = 100000;
constexpr auto kMinute = std::chrono::minutes(1);
constexpr auto kRelowerAfter = std::chrono::seconds(5);
// A slowed site is set this much under what its servers were seen to accept.
constexpr double kUnderAccepted = 0.95;
// A slowed site's rate is lowered to no less than this share of what it was.
constexpr double kMostLowered = 0.7;
// Fewer accepted messages than this say too little of a site's rate to go by.
constexpr size_t kMinAccepted = 4;

void forget_before(std::deque<Clock::time_point>& times, Clock::time_point since) {
  while (!times.empty() && (times.front() < since || times.size() > 100000)) times.pop_front();
}

bool pattern_matches(const std::vector<std::string>& patterns, std::string_view name) {
  if (name.empty()) return false;
  const std::string lower = ascii::lower(name);
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    return mail::domain_matches(ascii::lower(p), lower);
  });
}

long long seconds_up(Clock::duration d) {
  return std::chrono::ceil<std::chrono::seconds>(d).count();
}

}  // namespace

// --- TokenBucket ----------------------------------------------------------------------------

void TokenBucket::configure(uint32_t per_minute, Clock::time_point now) {
  const bool fresh = last_ == Clock::time_point{};
  if (per_minute == per_minute_ && !fresh) return;
  refill(now);
  per_minute_ = per_minute;
  capacity_ = std::max(1.0, per_minute / 60.0);
  if (fresh) tokens_ = capacity_;  // a new site may start at once
  tokens_ = std::min(tokens_, capacity_);
  last_ = now;
}

double TokenBucket::tokens_at(Clock::time_point now) const {
  if (last_ == Clock::time_point{} || now <= last_) return tokens_;
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  return std::min(capacity_, tokens_ + elapsed * per_minute_ / 60.0);
}

void TokenBucket::refill(Clock::time_point now) {
  tokens_ = tokens_at(now);
  if (now > last_) last_ = now;
}

Clock::duration TokenBucket::wait(Clock::time_point now) const {
  if (per_minute_ == 0) return {};
  const double tokens = tokens_at(now);
  if (tokens >= 1.0) return {};
  const double seconds = (1.0 - tokens) * 60.0 / per_minute_;
  return std::max<Clock::duration>(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)),
      std::chrono::milliseconds(1));
}

void TokenBucket::drain(Clock::time_point now) {
  refill(now);
  tokens_ = 0;
}

Clock::duration TokenBucket::take(Clock::time_point now) {
  const Clock::duration w = wait(now);
  if (w != Clock::duration{} || per_minute_ == 0) return w;
  refill(now);
  tokens_ -= 1.0;
  return w;
}

// --- Shaper ---------------------------------------------------------------------------------

Shaper::Shaper(Now now) : now_(std::move(now)) {}

void Shaper::configure(const Settings& settings) {
  settings_ = settings;
  const auto now = now_();
  for (auto& [name, s] : sites_) {
    s.configured = configured_for(rule_of(name));
    if (!s.slowed) {
      s.current = s.configured;
      s.bucket.configure(s.current.rate, now);
    }
  }
}

std::string Shaper::site_of(std::string_view domain, std::string_view mx_host,
                            const std::string& destination) const {
  for (size_t i = 0; i < settings_.shaping.size(); ++i) {
    const Shaping& rule = settings_.shaping[i];
    if (pattern_matches(rule.match, domain) || pattern_matches(rule.mx, mx_host)) {
      const std::string first = !rule.match.empty() ? rule.match.front()
                                : !rule.mx.empty()  ? rule.mx.front()
                                                    : "";
      return std::string(kSitePrefix) + std::to_string(i) + " (" + first + ")";
    }
  }
  return destination;
}

const Shaping* Shaper::rule_of(const std::string& name) const {
  if (!name.starts_with(kSitePrefix)) return nullptr;
  size_t index = 0;
  size_t i = kSitePrefix.size();
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i)
    index = index * 10 + static_cast<size_t>(name[i] - '0');
  if (i == kSitePrefix.size() || index >= settings_.shaping.size()) return nullptr;
  return &settings_.shaping[index];
}

SiteLimits Shaper::configured_for(const Shaping* rule) const {
  SiteLimits l{.rate = settings_.destination_rate,
               .connections = settings_.destination_connections,
               .messages_per_connection = settings_.messages_per_connection,
               .recipients = settings_.recipients_per_transaction};
  if (rule == nullptr) return l;
  l.rate = rule->rate.value_or(l.rate);
  l.connections = rule->connections.value_or(l.connections);
  l.messages_per_connection = rule->messages_per_connection.value_or(l.messages_per_connection);
  l.recipients = rule->recipients.value_or(l.recipients);
  return l;
}

SiteLimits Shaper::configured(const std::string& name) const {
  const auto it = sites_.find(name);
  return it != sites_.end() ? it->second.configured : configured_for(rule_of(name));
}

Shaper::Site& Shaper::site(const std::string& name) {
  auto it = sites_.find(name);
  if (it != sites_.end()) return it->second;
  if (sites_.size() >= kMaxSites) {
    const auto now = now_();
    std::erase_if(sites_, [&](const auto& entry) {
      const Site& s = entry.second;
      return !s.slowed && s.suspended_until <= now && s.hits.empty() &&
             s.bucket.wait(now) == Clock::duration{};
    });
  }
  Site s;
  s.configured = configured_for(rule_of(name));
  s.current = s.configured;
  s.bucket.configure(s.current.rate, now_());
  return sites_.emplace(name, std::move(s)).first->second;
}

SiteLimits Shaper::limits(const std::string& name) {
  return site(name).current;
}

Shaper::Gate Shaper::peek(const std::string& name) {
  Site& s = site(name);
  const auto now = now_();
  if (s.suspended_until > now)
    return {Gate::Kind::defer, s.suspended_until - now,
            "site suspended by rule " + s.suspended_by + " for " +
                std::to_string(seconds_up(s.suspended_until - now)) + " s more"};
  const Clock::duration w = s.bucket.wait(now);
  if (w == Clock::duration{}) return {};
  if (w > std::chrono::seconds(settings_.rate_hold))
    return {Gate::Kind::defer, w,
            "over the site's rate of " + std::to_string(s.current.rate) +
                " messages a minute; room again in " + std::to_string(seconds_up(w)) + " s"};
  return {Gate::Kind::wait, w, {}};
}

Shaper::Gate Shaper::admit(const std::string& name) {
  Gate g = peek(name);
  if (g.kind != Gate::Kind::go) return g;
  Site& s = site(name);
  const auto now = now_();
  s.bucket.take(now);
  s.started.push_back(now);
  forget_before(s.started, now - kMinute);
  return g;
}

void Shaper::delivered(const std::string& name) {
  Site& s = site(name);
  const auto now = now_();
  s.accepted.push_back(now);
  forget_before(s.accepted, now - kMinute);
}

bool Shaper::matches(const ReplyRule& rule, const mail::RecipientResult& reply) const {
  if (!reply.from_server() || reply.code < 400) return false;
  if (rule.code != 0 && static_cast<uint32_t>(reply.code) != rule.code) return false;
  if (!rule.status.empty() && reply.status_code != rule.status) return false;
  if (rule.greeting && reply.phase != mail::ClientPhase::greeting) return false;
  if (!rule.text.empty() &&
      ascii::lower(reply.text).find(ascii::lower(rule.text)) == std::string::npos)
    return false;
  return true;
}

Shaper::Observed Shaper::observe(const std::string& name, const mail::RecipientResult& reply,
                                 std::string_view server, size_t open) {
  if (!reply.from_server() || reply.code < 400) return {};  // never our own failures
  const auto now = now_();
  for (size_t i = 0; i < settings_.reply_rules.size(); ++i) {
    const ReplyRule& rule = settings_.reply_rules[i];
    if (!matches(rule, reply)) continue;
    Site& s = site(name);
    auto& hits = s.hits[i];
    hits.push_back(now);
    while (!hits.empty() &&
           (now - hits.front() > std::chrono::seconds(rule.window) || hits.size() > rule.threshold))
      hits.pop_front();
    Observed seen{.matched = true, .triggered = false, .action = rule.action};
    if (hits.size() >= rule.threshold) {
      hits.clear();
      const std::string cause = "rule " + rule.name + " triggered by " + std::string(server) +
                                ": " + std::to_string(reply.code) + " " + reply.text;
      seen.triggered = trigger(name, s, rule, now, open, cause);
    }
    return seen;  // the first rule that matches
  }
  return {};
}

uint32_t Shaper::lowered_rate(Site& s, Clock::time_point now) {
  forget_before(s.accepted, now - kMinute);
  forget_before(s.started, now - kMinute);
  // What the servers took since the site was last lowered (at that rate), else in the last
  // minute; over at least a second, as a burst into a server's allowance says little more.
  const Clock::time_point since = std::max(s.rate_lowered_at, now - kMinute);
  const auto first = std::lower_bound(s.accepted.begin(), s.accepted.end(), since);
  const auto count = static_cast<size_t>(s.accepted.end() - first);
  if (count >= kMinAccepted) {
    const double seconds = std::max(1.0, std::chrono::duration<double>(now - *first).count());
    const double measured = static_cast<double>(count) * 60.0 / seconds * kUnderAccepted;
    if (s.current.rate == 0) {
      if (s.rate_target == 0) s.rate_target = static_cast<uint32_t>(measured);
      return std::max<uint32_t>(1, static_cast<uint32_t>(measured));
    }
    // Under a rate already, the site may have sent less than it could (nothing waited for a
    // while, connections were refused): what was accepted then understates what the servers
    // take, so one reply lowers the rate by at most kMostLowered.
    const double current = s.current.rate;
    return std::max<uint32_t>(
        1, static_cast<uint32_t>(std::clamp(measured, current * kMostLowered, current)));
  }
  uint32_t base = s.current.rate;
  if (base == 0) {
    // Unlimited until now, and too little accepted to tell: half of what went out, as a rate a
    // minute over the time it was sending (up to the last minute): a burst of a second counts
    // as sixty of them.
    const double seconds =
        s.started.empty()
            ? 60.0
            : std::max(1.0, std::chrono::duration<double>(now - s.started.front()).count());
    base = std::max<uint32_t>(
        2, static_cast<uint32_t>(static_cast<double>(s.started.size()) * 60.0 / seconds));
    if (s.rate_target == 0) s.rate_target = base;
  }
  return std::max<uint32_t>(1, base / 2);
}

bool Shaper::trigger(const std::string& name, Site& s, const ReplyRule& rule, Clock::time_point now,
                     size_t open, const std::string& cause) {
  if (rule.action == ReplyAction::suspend) {
    s.suspended_until = std::max(s.suspended_until, now + std::chrono::seconds(rule.duration));
    s.suspended_by = rule.name;
    log::Line()
        .add("event", "shaping")
        .add("site", name)
        .add("action", "suspend")
        .add("rule", rule.name)
        .add("reason", cause)
        .add("until", events::until(s.suspended_until - now))
        .warn();
    return true;
  }
  // Replies to what was already on its way when the site was lowered say nothing new: the
  // site is lowered again only after kRelowerAfter (or its recover interval, if shorter).
  const bool rate = rule.action == ReplyAction::slow_rate;
  Clock::time_point& lowered_at = rate ? s.rate_lowered_at : s.connections_lowered_at;
  if (s.slowed && now - lowered_at <
                      std::min<Clock::duration>(kRelowerAfter, std::chrono::seconds(rule.recover)))
    return false;
  if (rate) {
    s.current.rate = lowered_rate(s, now);
    s.bucket.configure(s.current.rate, now);
    s.bucket.drain(now);
  } else {
    // As many as the server let in when it refused one more; half when that is not known.
    const uint32_t connections = s.current.connections;
    s.current.connections = open > 0 && open < connections ? static_cast<uint32_t>(open)
                                                           : std::max<uint32_t>(1, connections / 2);
  }
  lowered_at = now;
  s.slowed = true;
  s.slowed_by = rule.name;
  s.recover = rule.recover;
  s.hold_until = now + std::chrono::seconds(rule.duration);
  s.next_step = s.hold_until;
  log::Line()
      .add("event", "shaping")
      .add("site", name)
      .add("action", "slow")
      .add("rule", rule.name)
      .add("reason", cause)
      .number("rate", s.current.rate)
      .number("connections", s.current.connections)
      .add("until", events::until(s.hold_until - now))
      .warn();
  return true;
}

bool Shaper::tick() {
  const auto now = now_();
  bool altered = false;
  for (auto& [name, s] : sites_) {
    if (s.suspended_until != Clock::time_point{} && s.suspended_until <= now) {
      s.suspended_until = {};
      log::Line()
          .add("event", "shaping")
          .add("site", name)
          .add("action", "resume")
          .add("rule", s.suspended_by)
          .info();
      s.suspended_by.clear();
    }
    while (s.slowed && s.next_step <= now) {
      const SiteLimits& want = s.configured;
      const uint32_t target = want.rate != 0 ? want.rate : s.rate_target;
      if (s.current.rate != 0 && s.current.rate < target)
        s.current.rate = std::min(target, s.current.rate + std::max<uint32_t>(1, target / 10));
      if (s.current.rate != 0 && s.current.rate >= target && want.rate == 0) s.current.rate = 0;
      if (s.current.connections < want.connections) ++s.current.connections;
      s.bucket.configure(s.current.rate, now);
      s.next_step += std::chrono::seconds(s.recover);
      if (s.current.rate == want.rate && s.current.connections >= want.connections) {
        s.slowed = false;
        s.rate_target = 0;
        s.current = want;
        log::Line()
            .add("event", "shaping")
            .add("site", name)
            .add("action", "recovered")
            .add("rule", s.slowed_by)
            .info();
        s.slowed_by.clear();
      }
    }
    altered = altered || s.slowed || s.suspended_until != Clock::time_point{};
  }
  return altered;
}

std::vector<std::string> Shaper::altered() const {
  std::vector<std::string> names;
  for (const auto& [name, s] : sites_)
    if (s.slowed || s.suspended_until > now_()) names.push_back(name);
  return names;
}

std::string Shaper::describe(const std::string& name) const {
  const auto it = sites_.find(name);
  Site fresh;
  fresh.configured = configured_for(rule_of(name));
  fresh.current = fresh.configured;
  const Site& s = it != sites_.end() ? it->second : fresh;
  const auto now = now_();
  auto rate = [](uint32_t r) {
    return r == 0 ? std::string("unlimited") : std::to_string(r) + "/min";
  };
  std::string text =
      "site " + name + ": rate " + rate(s.current.rate) + " (configured " +
      rate(s.configured.rate) + "), connections " + std::to_string(s.current.connections) +
      " (configured " + std::to_string(s.configured.connections) + "), " +
      std::to_string(s.current.messages_per_connection) + " messages a connection, " +
      std::to_string(s.current.recipients) + " recipients a transaction";
  if (s.suspended_until > now)
    text += "; suspended by rule " + s.suspended_by + ", " +
            std::to_string(seconds_up(s.suspended_until - now)) + " s left";
  if (s.slowed)
    text +=
        "; slowed by rule " + s.slowed_by + ", " +
        (s.hold_until > now ? "held " + std::to_string(seconds_up(s.hold_until - now)) + " s more"
                            : "recovering every " + std::to_string(s.recover) + " s");
  return text + "\n";
}

}  // namespace postern::mta
