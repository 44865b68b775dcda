// smtpctl's command words; see commands.hpp.
#include "control/smtpctl/commands.hpp"

#include <charconv>

namespace postern::smtpctl {
namespace {

constexpr uint32_t kMaxAge = 366 * 86400;

Result<msg::CtlShowQueue> parse_queue_filters(const std::vector<std::string>& words, size_t from,
                                              msg::CtlShowQueue q) {
  for (size_t i = from; i < words.size(); i += 2) {
    const std::string& key = words[i];
    if (i + 1 >= words.size()) return make_error("show queue: " + key + " needs a value");
    const std::string& value = words[i + 1];
    if (key == "from") {
      q.sender = value;
    } else if (key == "to") {
      q.recipient = value;
    } else if (key == "domain") {
      q.domain = value;
    } else if (key == "state") {
      if (value == "pending")
        q.state = msg::StateFilter::pending;
      else if (value == "delivered")
        q.state = msg::StateFilter::delivered;
      else if (value == "failed")
        q.state = msg::StateFilter::failed;
      else
        return make_error("show queue: state is pending, delivered or failed, not " + value);
    } else if (key == "older" || key == "newer") {
      Result<uint32_t> age = parse_age(value);
      if (!age.ok()) return age.error();
      (key == "older" ? q.older : q.newer) = age.value();
    } else {
      return make_error("show queue: unknown filter " + key +
                        " (from, to, domain, state, older, newer)");
    }
  }
  if (q.sender.size() > msg::kMaxPathLength || q.recipient.size() > msg::kMaxPathLength ||
      q.domain.size() > msg::kMaxDomainLength)
    return make_error("show queue: filter too long");
  return q;
}

bool is_id_or_all(const std::string& word) {
  return word.size() <= msg::kMaxCtlMessageId;
}

}  // namespace

Result<uint32_t> parse_age(const std::string& text) {
  uint64_t n = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc() || ptr == text.data() || n > kMaxAge)
    return make_error("bad age " + text + " (e.g. 90s, 15m, 2h, 3d)");
  uint64_t unit = 1;
  const std::string suffix(ptr, end);
  if (suffix.empty() || suffix == "s")
    unit = 1;
  else if (suffix == "m")
    unit = 60;
  else if (suffix == "h")
    unit = 3600;
  else if (suffix == "d")
    unit = 86400;
  else if (suffix == "w")
    unit = 7 * 86400;
  else
    return make_error("bad age " + text + " (e.g. 90s, 15m, 2h, 3d)");
  if (n * unit > kMaxAge) return make_error("age " + text + " is over a year");
  return static_cast<uint32_t>(n * unit);
}

Result<Request> parse_command(const std::vector<std::string>& w, bool json) {
  const size_t n = w.size();
  const msg::CtlFormat format = json ? msg::CtlFormat::json : msg::CtlFormat::text;
  auto is = [&](std::initializer_list<const char*> words) {
    if (n != words.size()) return false;
    size_t i = 0;
    for (const char* word : words)
      if (w[i++] != word) return false;
    return true;
  };
  const bool show = n >= 2 && w[0] == "show";
  if (json && !show) return make_error("--json goes with show commands only");
  if (is({"show", "status"})) return Request{msg::CtlShowStatus{}};
  if (show && (w[1] == "queue" || w[1] == "shape")) {
    msg::CtlShowQueue q;
    q.view = w[1] == "shape" ? msg::QueueView::shape : msg::QueueView::list;
    q.format = format;
    Result<msg::CtlShowQueue> parsed = parse_queue_filters(w, 2, q);
    if (!parsed.ok()) return parsed.error();
    return Request{parsed.value()};
  }
  if (n == 3 && show && (w[1] == "envelope" || w[1] == "message")) {
    if (!valid_queue_id(w[2])) return make_error("not a queue id: " + w[2]);
    return Request{msg::CtlShowMessage{
        .id = w[2],
        .part = w[1] == "message" ? msg::MessagePart::data : msg::MessagePart::envelope,
        .format = format,
        .offset = 0}};
  }
  if (n == 3 && show && w[1] == "mx") {
    if (w[2].size() > msg::kMaxDomainLength) return make_error("domain too long");
    return Request{msg::CtlShowMx{.domain = w[2]}};
  }
  if (is({"show", "relays"})) return Request{msg::CtlShowRelays{.view = msg::RelayView::relays}};
  if (is({"show", "hosts"})) return Request{msg::CtlShowRelays{.view = msg::RelayView::hosts}};
  if (is({"show", "routes"})) return Request{msg::CtlShowRelays{.view = msg::RelayView::routes}};
  if (is({"show", "stats"})) return Request{msg::CtlShowStats{}};
  if (n == 3 && w[0] == "update" && w[1] == "table") {
    if (w[2].size() > msg::kMaxPathLength) return make_error("table name too long");
    return Request{msg::CtlUpdateTable{.name = w[2]}};
  }
  if (n == 2 && w[0] == "schedule" && is_id_or_all(w[1]))
    return Request{msg::CtlSchedule{.id = w[1]}};
  if (n == 2 && w[0] == "remove" && is_id_or_all(w[1])) return Request{msg::CtlRemove{.id = w[1]}};
  if ((n == 2 || n == 3) && (w[0] == "pause" || w[0] == "resume")) {
    msg::CtlPause p{.target = Role::queue, .pause = w[0] == "pause", .envelope = "", .domain = ""};
    if (n == 2 && (w[1] == "mda" || w[1] == "mta" || w[1] == "smtp")) {
      p.target = w[1] == "mda" ? Role::mda : w[1] == "mta" ? Role::mta : Role::smtp;
      return Request{p};
    }
    if (n == 3 && w[1] == "envelope") {
      if (!valid_queue_id(w[2])) return make_error("not a queue id: " + w[2]);
      p.envelope = w[2];
      return Request{p};
    }
    if (n == 3 && w[1] == "domain") {
      if (w[2].empty() || w[2].size() > msg::kMaxDomainLength ||
          w[2].find_first_of("@ \t") != std::string::npos)
        return make_error("not a domain: " + w[2]);
      p.domain = w[2];
      return Request{p};
    }
  }
  if (is({"log", "verbose"})) return Request{msg::CtlSetVerbose{.verbose = true}};
  if (is({"log", "brief"})) return Request{msg::CtlSetVerbose{.verbose = false}};
  if (is({"stop"})) return Request{msg::CtlStop{}};
  if (is({"reload"})) return Request{msg::CtlReload{}};
  if (n >= 1 && n <= 2 && w[0] == "monitor") {
    Monitor m;
    if (n == 2) {
      uint32_t count = 0;
      auto [ptr, ec] = std::from_chars(w[1].data(), w[1].data() + w[1].size(), count);
      if (ec != std::errc() || ptr != w[1].data() + w[1].size() || count == 0)
        return make_error("monitor: not a number of lines: " + w[1]);
      m.count = count;
    }
    return Request{m};
  }
  if (n >= 1 && n <= 2 && w[0] == "encrypt")
    return Request{Encrypt{.password = n == 2 ? w[1] : "", .given = n == 2}};
  std::string command;
  for (const auto& word : w) command += (command.empty() ? "" : " ") + word;
  return make_error(command.empty() ? "no command" : "unknown command: " + command);
}

}  // namespace postern::smtpctl
