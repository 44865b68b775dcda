// smtpctl's views of the queue; see views.hpp.
#include "queue/views.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <set>

#include "common/util/ascii.hpp"
#include "common/util/json.hpp"

namespace postern::queue {
namespace {

// Envelope text came from clients: nothing in it may move the admin's terminal.
std::string printable(std::string_view text) {
  return ascii::printable(text, '?');
}

std::string_view domain_of(std::string_view address) {
  const size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

bool contains_nocase(std::string_view text, std::string_view part) {
  if (part.empty()) return true;
  return std::search(text.begin(), text.end(), part.begin(), part.end(), [](char a, char b) {
           return ascii::to_lower(a) == ascii::to_lower(b);
         }) != text.end();
}

bool equal_nocase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && contains_nocase(a, b);
}

bool state_matches(RecipientState s, msg::StateFilter f) {
  switch (f) {
    case msg::StateFilter::any:
      return true;
    case msg::StateFilter::pending:
      return s == RecipientState::pending;
    case msg::StateFilter::delivered:
      return s == RecipientState::delivered;
    case msg::StateFilter::failed:
      return s == RecipientState::failed;
  }
  return false;
}

// iso: RFC 3339 for JSON, else for people.
std::string format_utc(int64_t unix_seconds, bool iso) {
  char buf[40];
  const time_t t = unix_seconds;
  struct tm tm {};
  gmtime_r(&t, &tm);
  if (iso)
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  else
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string json_time(int64_t unix_seconds) {
  return unix_seconds <= 0 ? "null" : json::quote(format_utc(unix_seconds, true));
}

// RFC 3461 NOTIFY as the words a client wrote.
std::vector<const char*> notify_words(const DsnNotify& n) {
  std::vector<const char*> words;
  for (auto [on, word] : {std::pair{n.never, "never"},
                          {n.success, "success"},
                          {n.failure, "failure"},
                          {n.delay, "delay"}})
    if (on) words.push_back(word);
  return words;
}

}  // namespace

void Page::append(std::string_view text) {
  bytes += text.size();
  if (pieces.empty() || pieces.back().size() + text.size() > msg::kMaxCtlText)
    pieces.emplace_back();
  // A single text longer than a frame (never from these views' lines) is cut into frames.
  while (text.size() > msg::kMaxCtlText) {
    pieces.back().append(text.substr(0, msg::kMaxCtlText));
    text.remove_prefix(msg::kMaxCtlText);
    pieces.emplace_back();
  }
  pieces.back().append(text);
}

bool matches(const Envelope& e, const msg::CtlShowQueue& q, int64_t now) {
  const int64_t age = now - e.arrival;
  if (q.older != 0 && age < int64_t{q.older}) return false;
  if (q.newer != 0 && age >= int64_t{q.newer}) return false;
  if (!contains_nocase(e.sender, q.sender)) return false;
  if (q.recipient.empty() && q.domain.empty() && q.state == msg::StateFilter::any) return true;
  return std::any_of(e.recipients.begin(), e.recipients.end(), [&](const Recipient& r) {
    return contains_nocase(r.address, q.recipient) &&
           (q.domain.empty() || equal_nocase(domain_of(r.address), q.domain)) &&
           state_matches(r.state, q.state);
  });
}

size_t shape_column(int64_t age_seconds) {
  const int64_t minutes = std::max<int64_t>(age_seconds, 0) / 60;
  for (size_t i = 0; i < kShapeLimits.size(); ++i)
    if (minutes < int64_t{kShapeLimits[i]}) return i;
  return kShapeLimits.size();
}

std::string utc_time(int64_t unix_seconds) {
  return unix_seconds <= 0 ? "-" : format_utc(unix_seconds, false);
}

std::string age_text(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return std::to_string(seconds) + "s";
  if (seconds < 7200) return std::to_string(seconds / 60) + "m";
  if (seconds < 172800) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

const char* state_name(RecipientState s) {
  switch (s) {
    case RecipientState::pending:
      return "pending";
    case RecipientState::delivered:
      return "delivered";
    case RecipientState::failed:
      return "failed";
  }
  return "?";
}

const Envelope* Views::find(const std::string& id, Page& page) const {
  const auto& messages = scheduler_.messages();
  auto it = valid_queue_id(id) ? messages.find(id) : messages.end();
  if (it != messages.end() && !scheduler_.removing(id)) return &it->second;
  page.result = {.ok = false, .text = "no message " + printable(id), .more = ""};
  return nullptr;
}

Views::Wait Views::wait_of(const Envelope& e, const Recipient& r, int64_t now) const {
  const Lane lane = scheduler_.lane_of(r.address);
  if (scheduler_.in_flight(e.id, lane)) return {"delivering", "", 0};
  if (scheduler_.held_message(e.id)) return {"held", "resume envelope " + e.id, 0};
  if (const std::string domain = scheduler_.held_domain_of(r.address); !domain.empty())
    return {"held", "resume domain " + domain, 0};
  // The process of the recipient's own lane: a remote recipient waits for mta, never mda.
  if (scheduler_.paused(lane))
    return {"paused", lane == Lane::local ? "resume mda" : "resume mta", 0};
  const int64_t at = scheduler_.next_try(e.id, lane);
  if (at <= now) return {"due", "", 0};
  return {"retry", "", at};
}

std::string Views::list_text(const Envelope& e, int64_t now) const {
  char head[96];
  std::snprintf(head, sizeof head, "%s  %8s  %10llu  ", e.id.c_str(),
                age_text(now - e.arrival).c_str(), static_cast<unsigned long long>(e.size));
  std::string text = head + ("<" + printable(e.sender) + ">\n");
  for (const Recipient& r : e.recipients) {
    std::string line = "    " + printable(r.address) + "  " + state_name(r.state) + "  " +
                       std::to_string(r.attempts) + (r.attempts == 1 ? " attempt" : " attempts");
    if (r.state == RecipientState::pending) {
      const Wait w = wait_of(e, r, now);
      const std::string_view kind = w.kind;
      line += kind == "delivering" ? "  next try now (in delivery)"
              : kind == "due"      ? "  next try now"
              : kind == "retry"    ? "  next try in " + age_text(w.until - now)
                                   : "  next try after smtpctl " + w.resume + " (" + w.kind + ")";
    }
    if (!r.last_error.empty()) line += "  (" + printable(r.last_error) + ")";
    text += line + "\n";
  }
  return text;
}

std::string Views::list_json(const Envelope& e, int64_t now, bool full) const {
  json::Array recipients;
  for (const Recipient& r : e.recipients) {
    json::Object o;
    o.add("address", r.address).add("state", state_name(r.state)).add("attempts", r.attempts);
    if (r.state == RecipientState::pending) {
      const Wait w = wait_of(e, r, now);
      o.add("wait", w.kind).raw("next_try", json_time(w.until));
    } else {
      o.raw("wait", "null").raw("next_try", "null");
    }
    o.raw("last_error", r.last_error.empty() ? "null" : json::quote(r.last_error));
    if (full) {
      json::Array notify;
      for (const char* word : notify_words(r.notify)) notify.raw(json::quote(word));
      o.raw("notify", notify.text())
          .raw("orcpt", r.orcpt.empty() ? "null" : json::quote(r.orcpt_type + ";" + r.orcpt));
    }
    recipients.raw(o.text());
  }
  json::Object o;
  o.add("id", e.id)
      .add("arrival", e.arrival)
      .raw("arrival_time", json_time(e.arrival))
      .add("age", std::max<int64_t>(now - e.arrival, 0))
      .add("size", e.size)
      .add("sender", e.sender);
  if (full) {
    o.add("helo", e.helo)
        .add("client_address", e.client_address)
        .add("client_name", e.client_name)
        .add("listener", e.listener)
        .add("auth_user", e.auth_user)
        .add("tls", e.tls)
        .add("smtputf8", e.smtputf8)
        .add("body", e.body_8bit ? "8bitmime" : "7bit")
        .raw("ret", e.ret == DsnRet::full      ? "\"full\""
                    : e.ret == DsnRet::headers ? "\"hdrs\""
                                               : "null")
        .add("envid", e.envid)
        .raw("next_try", json_time(e.next_try))
        .add("delay_reported", e.delay_reported);
  }
  o.raw("recipients", recipients.text());
  return o.text() + "\n";
}

Page Views::list(const msg::CtlShowQueue& q, int64_t now) const {
  Page page;
  const auto& messages = scheduler_.messages();
  auto it = q.after.empty() ? messages.begin() : messages.upper_bound(q.after);
  size_t shown = 0;
  size_t scanned = 0;
  for (; it != messages.end(); ++it) {
    if (page.bytes >= kPageBytes || scanned >= kPageScan) {
      page.result.more = std::prev(it)->first;
      break;
    }
    ++scanned;
    const Envelope& e = it->second;
    if (scheduler_.removing(e.id) || !matches(e, q, now)) continue;
    page.append(q.format == msg::CtlFormat::json ? list_json(e, now, false) : list_text(e, now));
    ++shown;
  }
  page.result.text = std::to_string(shown);
  return page;
}

Page Views::shape(const msg::CtlShowQueue& q, int64_t now) const {
  using Row = std::array<uint64_t, kShapeColumns>;
  std::map<std::string, Row> rows;
  Row total{};
  Row other{};
  for (const auto& [id, e] : scheduler_.messages()) {
    if (scheduler_.removing(id) || !matches(e, q, now)) continue;
    const size_t column = shape_column(now - e.arrival);
    ++total[column];
    // A message counts once for each destination domain it still has recipients waiting in.
    std::set<std::string> domains;
    for (const Recipient& r : e.recipients)
      if (r.state == RecipientState::pending)
        domains.insert(ascii::lower(r.address.find('@') == std::string::npos
                                        ? std::string_view("(local)")
                                        : domain_of(r.address)));
    for (const std::string& d : domains) {
      auto row = rows.find(d);
      if (row == rows.end() && rows.size() < kMaxShapeDomains) row = rows.emplace(d, Row{}).first;
      ++(row == rows.end() ? other : row->second)[column];
    }
  }
  auto sum = [](const Row& r) {
    uint64_t n = 0;
    for (uint64_t v : r) n += v;
    return n;
  };
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](const auto& a, const auto& b) { return sum(a.second) > sum(b.second); });
  if (sum(other) != 0) sorted.emplace_back("(other domains)", other);
  Page page;
  if (q.format == msg::CtlFormat::json) {
    auto line = [&](const std::string& domain, const Row& r, bool is_total) {
      json::Array ages;
      for (uint64_t v : r) ages.raw(std::to_string(v));
      json::Object o;
      o.raw("domain", is_total ? "null" : json::quote(domain)).add("total", sum(r));
      o.raw("ages", ages.text());
      page.append(o.text() + "\n");
    };
    line("", total, true);
    for (const auto& [domain, r] : sorted) line(domain, r, false);
  } else {
    std::string head = "                                  T";
    char cell[64];
    for (uint32_t limit : kShapeLimits) {
      std::snprintf(cell, sizeof cell, " %5u", limit);
      head += cell;
    }
    std::snprintf(cell, sizeof cell, " %5u+\n", kShapeLimits.back());
    page.append(head + cell);
    auto line = [&](const std::string& domain, const Row& r) {
      std::snprintf(cell, sizeof cell, "%-28.28s %6llu", printable(domain).c_str(),
                    static_cast<unsigned long long>(sum(r)));
      std::string text = cell;
      for (uint64_t v : r) {
        std::snprintf(cell, sizeof cell, " %5llu", static_cast<unsigned long long>(v));
        text += cell;
      }
      page.append(text + "\n");
    };
    line("TOTAL", total);
    for (const auto& [domain, r] : sorted) line(domain, r);
  }
  page.result.text = std::to_string(sum(total));
  return page;
}

Page Views::envelope(const msg::CtlShowMessage& m, int64_t now) const {
  Page page;
  const Envelope* found = find(m.id, page);
  if (found == nullptr) return page;
  const Envelope& e = *found;
  if (m.format == msg::CtlFormat::json) {
    page.append(list_json(e, now, true));
    return page;
  }
  // "-" for what the message does not have (no AUTH, no TLS, no DSN parameters): every field
  // is there, and a line never ends in a blank.
  auto field = [&](const char* name, const std::string& value) {
    page.append(std::string(name) + ": " + (value.empty() ? "-" : printable(value)) + "\n");
  };
  auto when = [&](int64_t at) {
    if (at <= 0) return std::string("-");
    return utc_time(at) +
           (at <= now ? " (" + age_text(now - at) + " ago)" : " (in " + age_text(at - now) + ")");
  };
  field("id", e.id);
  field("arrival", when(e.arrival));
  field("size", std::to_string(e.size));
  field("sender", "<" + e.sender + ">");
  field("helo", e.helo);
  field("client", e.client_address + (e.client_name.empty() ? "" : " (" + e.client_name + ")"));
  field("listener", e.listener);
  field("auth", e.auth_user);
  field("tls", e.tls);
  field("smtputf8", e.smtputf8 ? "yes" : "no");
  field("body", e.body_8bit ? "8bitmime" : "7bit");
  field("ret", e.ret == DsnRet::full ? "full" : e.ret == DsnRet::headers ? "hdrs" : "");
  field("envid", e.envid);
  field("next try", e.next_try <= now ? "now" : when(e.next_try));
  for (const Recipient& r : e.recipients) {
    std::string notify;
    for (const char* word : notify_words(r.notify))
      notify += (notify.empty() ? "" : ",") + std::string(word);
    std::string text = "recipient: " + printable(r.address) + " " + state_name(r.state);
    if (!notify.empty()) text += " notify=" + notify;
    if (!r.orcpt.empty()) text += " orcpt=" + printable(r.orcpt_type + ";" + r.orcpt);
    if (r.attempts != 0) text += " attempts=" + std::to_string(r.attempts);
    if (!r.last_error.empty()) text += " last_error=" + printable(r.last_error);
    if (r.state == RecipientState::pending) {
      const Wait w = wait_of(e, r, now);
      const std::string_view kind = w.kind;
      text += " wait=" + std::string(kind) +
              (kind == "retry"    ? " until " + utc_time(w.until)
               : w.resume.empty() ? ""
                                  : " (smtpctl " + w.resume + ")");
    }
    page.append(text + "\n");
  }
  return page;
}

Page Views::data(const msg::CtlShowMessage& m) const {
  Page page;
  const Envelope* found = find(m.id, page);
  if (found == nullptr) return page;
  const uint64_t size = found->size;
  if (m.offset >= size) return page;
  Result<UniqueFd> fd = spool_.open_message(m.id);
  if (!fd.ok()) {
    page.result = {.ok = false, .text = fd.error().message, .more = ""};
    return page;
  }
  std::string buf(std::min<uint64_t>(kPageBytes, size - m.offset), '\0');
  const ssize_t n = pread(fd->get(), buf.data(), buf.size(), static_cast<off_t>(m.offset));
  if (n < 0) {
    page.result = {.ok = false, .text = std::string("read: ") + std::strerror(errno), .more = ""};
    return page;
  }
  buf.resize(static_cast<size_t>(n));
  page.append(buf);
  // A short read before the recorded size is the end too: never ask again for nothing.
  if (n > 0 && m.offset + static_cast<uint64_t>(n) < size)
    page.result.more = std::to_string(m.offset + static_cast<uint64_t>(n));
  return page;
}

}  // namespace postern::queue
