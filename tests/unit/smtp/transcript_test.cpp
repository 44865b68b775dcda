// Golden transcripts of the SMTP frontend: each tests/data/smtp/NAME.in drives the real
// smtp::Server and its sessions in this process, on a real event loop, and NAME.out is what
// the client and the session's peers saw, byte for byte. The client is one end of a
// socketpair; lookup and the queue are IPC channels answered as the .in file scripts, the
// queue with a real temporary file for the message data. POSTERN_UPDATE_GOLDEN=1 rewrites the
// .out files from what the code does now. The syntax is in tests/data/smtp/README.
#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/ipc/child.hpp"
#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/tls.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"
#include "smtp/server.hpp"

namespace postern::smtp {
namespace {

namespace fs = std::filesystem;

const fs::path kDataDir = fs::path(POSTERN_TEST_DATA_DIR) / "smtp";
constexpr uint32_t kListenerId = 1;
// Event-loop passes in a row with nothing happening before a step is over: a cause shows its
// effect within two passes (a write queued in one pass is made in the next).
constexpr int kQuietPasses = 8;
constexpr int kMaxPasses = 100000;

// --- text forms ------------------------------------------------------------------------------

// Printable ASCII as it is, the rest escaped; a run of more than 16 equal octets becomes
// {{N*c}}, the form .in files write it in.
std::string escape(std::string_view bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    size_t run = 1;
    while (i + run < bytes.size() && bytes[i + run] == bytes[i]) ++run;
    auto one = [](unsigned char c) -> std::string {
      switch (c) {
        case '\r':
          return "\\r";
        case '\n':
          return "\\n";
        case '\t':
          return "\\t";
        case '\0':
          return "\\0";
        case '\\':
          return "\\\\";
        case '{':
          return "\\{";
        default:
          break;
      }
      if (c < 0x20 || c >= 0x7f) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", c);
        return hex;
      }
      return std::string(1, static_cast<char>(c));
    };
    if (run > 16) {
      out += "{{" + std::to_string(run) + "*" + one(static_cast<unsigned char>(bytes[i])) + "}}";
      i += run;
    } else {
      out += one(static_cast<unsigned char>(bytes[i]));
      ++i;
    }
  }
  return out;
}

// A whole decimal number from 0 to max, or nullopt: a typo in a script fails the test rather
// than reading as 0.
std::optional<int> number(std::string_view text, int max) {
  int n = 0;
  const char* last = text.data() + text.size();
  const auto [end, error] = std::from_chars(text.data(), last, n);
  if (error != std::errc{} || end != last || n < 0 || n > max) return std::nullopt;
  return n;
}

// Appends the character or backslash escape at text[i] (escape()'s forms: \r \n \t \0 \\ \{
// \xHH) and moves i past it; false for a bad escape.
bool unescape_one(std::string_view text, size_t& i, std::string& out) {
  if (text[i] != '\\') {
    out += text[i++];
    return true;
  }
  if (i + 1 >= text.size()) return false;
  const char c = text[i + 1];
  i += 2;
  switch (c) {
    case 'r':
      out += '\r';
      break;
    case 'n':
      out += '\n';
      break;
    case 't':
      out += '\t';
      break;
    case '0':
      out += '\0';
      break;
    case '\\':
      out += '\\';
      break;
    case '{':
      out += '{';
      break;
    case 'x': {
      if (i + 2 > text.size()) return false;
      out += static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16));
      i += 2;
      break;
    }
    default:
      return false;
  }
  return true;
}

// The inverse of escape(): its escapes and {{N*text}}, text holding no {{ of its own.
std::optional<std::string> unescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (!text.substr(i).starts_with("{{")) {
      if (!unescape_one(text, i, out)) return std::nullopt;
      continue;
    }
    const size_t star = text.find('*', i);
    const size_t end = text.find("}}", i);
    if (star == std::string_view::npos || end == std::string_view::npos || star > end)
      return std::nullopt;
    const std::optional<int> count = number(text.substr(i + 2, star - i - 2), 1000000);
    const std::string_view unit_text = text.substr(star + 1, end - star - 1);
    std::string unit;
    for (size_t u = 0; u < unit_text.size();)
      if (unit_text.substr(u).starts_with("{{") || !unescape_one(unit_text, u, unit))
        return std::nullopt;
    if (!count || *count == 0) return std::nullopt;
    for (int k = 0; k < *count; ++k) out += unit;
    i = end + 2;
  }
  return out;
}

// Bytes as lines "PREFIX text", one per CRLF-ended line; an unfinished line says so.
std::string as_lines(std::string_view prefix, std::string_view bytes) {
  std::string out;
  while (!bytes.empty()) {
    const size_t crlf = bytes.find("\r\n");
    if (crlf == std::string_view::npos) {
      out += std::string(prefix) + escape(bytes) + " [no CRLF]\n";
      break;
    }
    out += std::string(prefix) + escape(bytes.substr(0, crlf)) + "\n";
    bytes.remove_prefix(crlf + 2);
  }
  return out;
}

std::string notify_text(const DsnNotify& n) {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(n.never, "NEVER");
  add(n.success, "SUCCESS");
  add(n.failure, "FAILURE");
  add(n.delay, "DELAY");
  return out.empty() ? "-" : out;
}

const char* ret_text(DsnRet ret) {
  switch (ret) {
    case DsnRet::unspecified:
      return "-";
    case DsnRet::full:
      return "FULL";
    case DsnRet::headers:
      return "HDRS";
  }
  return "?";
}

// The Received: header's date is the clock's; the rest of the message is the client's.
std::string without_date(std::string data) {
  const size_t mark = data.find(";\r\n\t");
  if (mark == std::string::npos) return data;
  const size_t start = mark + 4;
  const size_t end = data.find("\r\n", start);
  if (end == std::string::npos) return data;
  return data.replace(start, end - start, "(date)");
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// --- the script ------------------------------------------------------------------------------

struct Script {
  config::ListenerRole role = config::ListenerRole::smtp;
  std::string listener_name = "smtp";
  bool plaintext_auth = false;
  bool auth = false;
  std::string client = "192.0.2.1";
  bool without_lookup = false;    // no lookup process at all
  std::vector<std::string> busy;  // clients whose silent sessions are open already
  bool tls = false;               // a certificate is configured (tests/data/smtp/tls)
  smtp::Limits limits;
  // Everything after the settings, in order.
  std::vector<std::string> steps;
};

// Any limit of smtp's table, by its name in smtpd.yaml.
bool set_limit(smtp::Limits& l, const std::string& name, uint64_t value) {
  bool found = false;
  fields::for_each_field<smtp::Limits>([&](const auto& field) {
    if (field.name != name) return;
    using Member = typename std::decay_t<decltype(field)>::MemberType;
    l.*field.member = static_cast<Member>(value);
    found = true;
  });
  return found;
}

// --- the harness -----------------------------------------------------------------------------

// "lookup rcpt local", "queue commit hold": the answer to a question yet to come.
bool is_answer(const std::string& line) {
  for (const char* kind : {"lookup client ", "lookup rcpt ", "lookup auth ", "lookup sender ",
                           "queue open ", "queue commit "})
    if (line.starts_with(kind)) return true;
  return false;
}

class Transcript {
 public:
  explicit Transcript(const Script& script) : script_(script) {}

  // Runs the script; the transcript, or a line starting "harness error:" on a bad script.
  std::string run();

 private:
  void step(const std::string& line);
  void client_write(const std::string& bytes);
  void settle();
  void client_handshake();
  bool pass();
  void read_client();
  void note(const std::string& line) { out_ += line + "\n"; }
  void fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }

  void start_peers();
  void take(msg::Dispatcher& side, const char* who, ipc::Frame&& f);
  std::string next_answer(const char* kind, const char* fallback);
  // The next scripted answer of a kind that maps onto table: the first entry when none is
  // scripted, nullopt when the script holds the answer back (or names no such answer).
  template <typename T>
  std::optional<std::pair<std::string, T>> pick(
      const char* kind, const char* who, const std::vector<std::pair<std::string, T>>& table);
  template <typename M>
  void answer(ipc::Channel* channel, const char* who, const M& m, uint32_t id,
              const std::string& text, UniqueFd fd = {});

  const Script& script_;
  std::string out_;
  std::string error_;
  std::unique_ptr<ChildRuntime> runtime_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<ipc::Channel> parent_;
  std::unique_ptr<ipc::Channel> lookup_;
  std::unique_ptr<ipc::Channel> queue_;
  msg::Dispatcher lookup_side_{Role::lookup};
  msg::Dispatcher queue_side_{Role::queue};
  msg::Dispatcher parent_side_{Role::parent};
  UniqueFd client_;
  // The client's TLS, once it started it; the transcript shows the plain text.
  TlsPtr client_tls_;
  bool handshaking_ = false;
  UniqueFd listener_dummy_;
  std::vector<UniqueFd> busy_;  // the client ends of the silent sessions
  bool client_closed_ = false;
  bool activity_ = false;
  std::map<std::string, std::deque<std::string>> answers_;
  // The queue's side of each open message: the file the session writes into.
  std::map<std::string, UniqueFd> messages_;
  uint32_t next_message_ = 1;
  std::string batch_;
  bool in_batch_ = false;
};

std::string Transcript::run() {
  UniqueFd parent_end;
  UniqueFd child_end;
  if (!ipc::make_socketpair(parent_end, child_end)) return "harness error: socketpair\n";
  // Neither end may already be the descriptor the runtime's end is moved to.
  for (UniqueFd* end : {&parent_end, &child_end})
    if (end->get() == kParentChannelFd) *end = UniqueFd(fcntl(end->get(), F_DUPFD_CLOEXEC, 10));
  // ChildRuntime takes the parent channel where a program finds it.
  if (dup2(child_end.get(), kParentChannelFd) < 0) return "harness error: dup2\n";
  child_end.reset();
  optind = 0;  // the runtime parses "-d" with getopt, once per transcript
  char name[] = "smtpd-smtp";
  char debug[] = "-d";
  char* argv[] = {name, debug, nullptr};
  runtime_ = std::make_unique<ChildRuntime>(Role::smtp, 2, argv);
  server_ = std::make_unique<Server>(*runtime_);
  event_base* base = runtime_->base();
  parent_ = std::make_unique<ipc::Channel>(
      base, std::move(parent_end), "smtp",
      ipc::Channel::Handlers{
          .on_frame = [this](ipc::Frame&& f) { take(parent_side_, "the parent", std::move(f)); },
          .on_close = [this](ipc::CloseReason,
                             std::string_view) { note("parent: channel closed"); },
          .on_drain = nullptr});
  start_peers();

  // What the parent says first: the configuration, the listener, the peers, Start.
  smtp::Settings config{.hostname = "mx.test", .limits = script_.limits, .auth = script_.auth};
  UniqueFd unused;
  if (!ipc::make_socketpair(listener_dummy_, unused)) return "harness error: socketpair\n";
  const bool sent = msg::send(*parent_, config) &&
                    msg::send(*parent_,
                              msg::ListenerAdd{.id = kListenerId,
                                               .name = script_.listener_name,
                                               .role = script_.role,
                                               .address = "192.0.2.25:25",
                                               .plaintext_auth = script_.plaintext_auth},
                              0, std::move(unused));
  if (!sent) return "harness error: cannot configure\n";
  if (script_.tls) {
    tls_initialize();
    const smtp::TlsSettings tls{.certificate_pem = read_file(kDataDir / "tls" / "cert.pem"),
                                .key_pem = read_file(kDataDir / "tls" / "key.pem")};
    if (!msg::send(*parent_, tls)) return "harness error: cannot send the certificate\n";
  }
  settle();
  runtime_->start_unconfined();
  settle();

  UniqueFd server_end;
  if (!ipc::make_socketpair(client_, server_end)) return "harness error: socketpair\n";
  if (fcntl(client_.get(), F_SETFL, O_NONBLOCK) != 0) return "harness error: fcntl\n";
  // Answers scripted before the first client line are there before the client connects
  // (the client check is asked at once).
  size_t next = 0;
  while (next < script_.steps.size() && is_answer(script_.steps[next])) step(script_.steps[next++]);
  for (const std::string& address : script_.busy) {
    UniqueFd busy_end;
    if (!ipc::make_socketpair(busy_.emplace_back(), busy_end)) return "harness error: socketpair\n";
    server_->admit(kListenerId, std::move(busy_end), address);
    settle();
  }
  server_->admit(kListenerId, std::move(server_end), script_.client);
  settle();
  // RFC 8314: on an smtps listener TLS starts with the first byte.
  if (script_.role == config::ListenerRole::smtps) client_handshake();
  for (; next < script_.steps.size() && error_.empty(); ++next) step(script_.steps[next]);
  if (in_batch_) fail("batch without end");
  settle();
  server_.reset();  // sessions end: what they tell the peers is part of the transcript
  settle();
  lookup_.reset();
  queue_.reset();
  parent_.reset();
  runtime_.reset();
  if (!error_.empty()) return out_ + "harness error: " + error_ + "\n";
  return out_;
}

void Transcript::start_peers() {
  for (Role peer : {Role::lookup, Role::queue}) {
    if (peer == Role::lookup && script_.without_lookup) continue;
    UniqueFd mine;
    UniqueFd theirs;
    if (!ipc::make_socketpair(mine, theirs)) return fail("socketpair");
    auto handler = [this, peer](ipc::Frame&& f) {
      if (peer == Role::lookup)
        take(lookup_side_, "lookup", std::move(f));
      else
        take(queue_side_, "the queue", std::move(f));
    };
    auto channel = std::make_unique<ipc::Channel>(
        runtime_->base(), std::move(mine), "smtp",
        ipc::Channel::Handlers{.on_frame = handler,
                               .on_close =
                                   [this, peer](ipc::CloseReason, std::string_view) {
                                     note(std::string(role_name(peer)) +
                                          ": smtp closed the channel");
                                   },
                               .on_drain = nullptr});
    if (!msg::send(*parent_, msg::PeerChannel{.peer = peer}, 0, std::move(theirs)))
      return fail("cannot send a peer channel");
    (peer == Role::lookup ? lookup_ : queue_) = std::move(channel);
  }

  // lookup's side.
  lookup_side_.on<msg::PeerHello>([](msg::Incoming&, msg::PeerHello&&) {});
  lookup_side_.on<msg::SessionOpen>([this](msg::Incoming& in, msg::SessionOpen&& m) {
    // lookup reads the addresses off the socket and closes it; so does this.
    note("lookup< SessionOpen session=" + std::to_string(m.session) + " listener=" + m.listener +
         (in.fd ? " (fd)" : " (no fd)"));
    in.fd.reset();
  });
  lookup_side_.on<msg::SessionClose>([this](msg::Incoming&, msg::SessionClose&& m) {
    note("lookup< SessionClose session=" + std::to_string(m.session));
  });
  lookup_side_.on<msg::ClientCheck>([this](msg::Incoming& in, msg::ClientCheck&& m) {
    note("lookup< ClientCheck listener=" + m.listener + " address=" + m.address);
    const std::string a = next_answer("client", "accept");
    msg::ClientVerdict v;
    if (a == "hold") return note("lookup: (no answer)");
    if (a.starts_with("refuse ")) {
      v.refuse = true;
      v.reply = a.substr(7);
    } else if (a.starts_with("verified ")) {
      v.verified_name = a.substr(9);
    } else if (a.starts_with("header ")) {
      v.header = a.substr(7);
    } else if (a.starts_with("delay ")) {
      const std::optional<int> delay =
          number(std::string_view(a).substr(6), std::numeric_limits<int>::max());
      if (!delay) return fail("bad delay: " + a);
      v.delay_ms = static_cast<uint32_t>(*delay);
    } else if (a != "accept") {
      return fail("unknown client answer: " + a);
    }
    answer(lookup_.get(), "lookup", v, in.request_id, "ClientVerdict " + a);
  });
  lookup_side_.on<msg::RcptCheck>([this](msg::Incoming& in, msg::RcptCheck&& m) {
    note("lookup< RcptCheck local_part=" + escape(m.local_part) + " domain=" + escape(m.domain) +
         " literal=" + std::to_string(m.literal) + " authenticated=" +
         std::to_string(m.authenticated) + " session=" + std::to_string(m.session));
    static const std::vector<std::pair<std::string, msg::RcptDecision>> kDecisions = {
        {"local", msg::RcptDecision::local},
        {"relay", msg::RcptDecision::relay},
        {"relay_denied", msg::RcptDecision::relay_denied},
        {"unknown_user", msg::RcptDecision::unknown_user},
        {"loop", msg::RcptDecision::loop},
        {"temporary", msg::RcptDecision::temporary}};
    if (const auto a = pick("rcpt", "lookup", kDecisions))
      answer(lookup_.get(), "lookup", msg::RcptVerdict{.decision = a->second}, in.request_id,
             "RcptVerdict " + a->first);
  });
  lookup_side_.on<msg::SenderCheck>([this](msg::Incoming& in, msg::SenderCheck&& m) {
    note("lookup< SenderCheck session=" + std::to_string(m.session) + " sender=<" +
         escape(m.sender) + ">");
    static const std::vector<std::pair<std::string, msg::SenderVerdict>> kVerdicts = {
        {"allowed", {.allowed = true, .temporary = false, .reason = ""}},
        {"refused", {.allowed = false, .temporary = false, .reason = "scripted"}},
        {"temporary", {.allowed = false, .temporary = true, .reason = "scripted"}}};
    if (const auto a = pick("sender", "lookup", kVerdicts))
      answer(lookup_.get(), "lookup", a->second, in.request_id, "SenderVerdict " + a->first);
  });
  lookup_side_.on<msg::AuthCheck>([this](msg::Incoming& in, msg::AuthCheck&& m) {
    note("lookup< AuthCheck user=" + escape(m.user) + " password=" + escape(m.password) +
         " client_address=" + m.client_address + " session=" + std::to_string(m.session));
    static const std::vector<std::pair<std::string, msg::AuthOutcome>> kOutcomes = {
        {"accepted", msg::AuthOutcome::accepted},
        {"rejected", msg::AuthOutcome::rejected},
        {"throttled", msg::AuthOutcome::throttled},
        {"unavailable", msg::AuthOutcome::unavailable}};
    // No delay: the transcript is about what is said, not when.
    if (const auto a = pick("auth", "lookup", kOutcomes))
      answer(lookup_.get(), "lookup", msg::AuthVerdict{.outcome = a->second, .delay_ms = 0},
             in.request_id, "AuthVerdict " + a->first);
  });

  // The queue's side.
  queue_side_.on<msg::PeerHello>([](msg::Incoming&, msg::PeerHello&&) {});
  queue_side_.on<msg::MessageOpen>([this](msg::Incoming& in, msg::MessageOpen&&) {
    note("queue< MessageOpen");
    const std::string a = next_answer("open", "ok");
    if (a == "hold") return note("queue: (no answer)");
    if (a == "temporary_failure") {
      answer(queue_.get(), "queue",
             msg::MessageResult{
                 .id = "", .outcome = msg::MessageOutcome::temporary_failure, .reason = "scripted"},
             in.request_id, "MessageResult temporary_failure");
      return;
    }
    // unwritable: a descriptor the session cannot write, as when the disk is full.
    if (a != "ok" && a != "unwritable") return fail("unknown open answer: " + a);
    char id[32];
    std::snprintf(id, sizeof id, "%016x", next_message_++);
    char path[] = "/tmp/postern-transcript-XXXXXX";
    UniqueFd file(mkostemp(path, O_CLOEXEC));
    if (!file) return fail("mkostemp");
    unlink(path);
    UniqueFd data(open(("/proc/self/fd/" + std::to_string(file.get())).c_str(),
                       (a == "ok" ? O_WRONLY : O_RDONLY) | O_CLOEXEC));
    if (!data) return fail("reopen write-only");
    messages_[id] = std::move(file);
    answer(queue_.get(), "queue", msg::MessageOpened{.id = id}, in.request_id,
           std::string("MessageOpened id=") + id + " (fd)", std::move(data));
  });
  queue_side_.on<msg::MessageRecipients>([this](msg::Incoming&, msg::MessageRecipients&& m) {
    note("queue< MessageRecipients id=" + m.id + " count=" + std::to_string(m.recipients.size()));
    for (const Recipient& r : m.recipients)
      note("  rcpt <" + escape(r.address) + "> notify=" + notify_text(r.notify) +
           " orcpt=" + (r.orcpt_type.empty() ? "-" : escape(r.orcpt_type) + ";" + escape(r.orcpt)));
  });
  queue_side_.on<msg::MessageCommit>([this](msg::Incoming& in, msg::MessageCommit&& m) {
    const Envelope& e = m.envelope;
    const int64_t now = time(nullptr);
    note("queue< MessageCommit id=" + e.id + " recipients=" + std::to_string(m.recipient_count) +
         " session=" + std::to_string(m.session));
    note("  sender <" + escape(e.sender) + "> helo=" + escape(e.helo) +
         " client=" + e.client_address + " listener=" + e.listener +
         " auth_user=" + (e.auth_user.empty() ? "-" : escape(e.auth_user)) +
         " tls=" + (e.tls.empty() ? "-" : e.tls));
    note("  smtputf8=" + std::to_string(e.smtputf8) + " body_8bit=" + std::to_string(e.body_8bit) +
         " ret=" + ret_text(e.ret) + " envid=" + (e.envid.empty() ? "-" : escape(e.envid)) +
         " size=" + std::to_string(e.size) + " arrival=" +
         (e.arrival > now - 60 && e.arrival <= now ? "now" : std::to_string(e.arrival)));
    auto file = messages_.find(e.id);
    if (file == messages_.end()) {
      note("  (no such message)");
    } else {
      std::string data;
      char buf[65536];
      for (off_t at = 0;;) {
        const ssize_t n = pread(file->second.get(), buf, sizeof buf, at);
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
        at += n;
      }
      out_ += as_lines("  data| ", without_date(std::move(data)));
      messages_.erase(file);
    }
    static const std::vector<std::pair<std::string, msg::MessageOutcome>> kOutcomes = {
        {"committed", msg::MessageOutcome::committed},
        {"temporary_failure", msg::MessageOutcome::temporary_failure},
        {"permanent_failure", msg::MessageOutcome::permanent_failure},
        {"relay_denied", msg::MessageOutcome::relay_denied}};
    if (const auto a = pick("commit", "queue", kOutcomes))
      answer(queue_.get(), "queue",
             msg::MessageResult{.id = e.id, .outcome = a->second, .reason = "scripted"},
             in.request_id, "MessageResult " + a->first);
  });
  queue_side_.on<msg::MessageAbort>([this](msg::Incoming&, msg::MessageAbort&& m) {
    note("queue< MessageAbort id=" + m.id);
    messages_.erase(m.id);
  });

  parent_side_.on<msg::Ready>([](msg::Incoming&, msg::Ready&&) {});
  parent_side_.on<msg::PeerFault>([this](msg::Incoming&, msg::PeerFault&& m) {
    note("parent< PeerFault peer=" + std::string(role_name(m.peer)) + " reason=" + m.reason);
  });
}

template <typename M>
void Transcript::answer(ipc::Channel* channel, const char* who, const M& m, uint32_t id,
                        const std::string& text, UniqueFd fd) {
  note(std::string(who) + "> " + text);
  if (channel == nullptr || !msg::send(*channel, m, id, std::move(fd)))
    fail(std::string("cannot answer as ") + who);
}

template <typename T>
std::optional<std::pair<std::string, T>> Transcript::pick(
    const char* kind, const char* who, const std::vector<std::pair<std::string, T>>& table) {
  const std::string a = next_answer(kind, table.front().first.c_str());
  if (a == "hold") {
    note(std::string(who) + ": (no answer)");
    return std::nullopt;
  }
  for (const auto& entry : table)
    if (entry.first == a) return entry;
  fail(std::string("unknown ") + kind + " answer: " + a);
  return std::nullopt;
}

std::string Transcript::next_answer(const char* kind, const char* fallback) {
  auto& queue = answers_[kind];
  if (queue.empty()) return fallback;
  std::string a = queue.front();
  queue.pop_front();
  return a;
}

// A frame smtp sent to one of the processes this test plays.
void Transcript::take(msg::Dispatcher& side, const char* who, ipc::Frame&& f) {
  activity_ = true;
  const Status st = side.dispatch(Role::smtp, std::move(f));
  if (!st.ok()) fail(std::string(who) + " cannot take what smtp sent: " + st.error().message);
}

// One line of the script after the settings.
void Transcript::step(const std::string& line) {
  auto client_bytes = [&](std::string_view text, std::string_view ending) {
    const auto bytes = unescape(text);
    if (!bytes) return fail("bad escape in: " + line);
    const std::string all = *bytes + std::string(ending);
    if (in_batch_) {
      batch_ += all;
    } else {
      client_write(all);
    }
  };
  if (line.starts_with("> ") || line == ">")
    return client_bytes(line.substr(std::min<size_t>(2, line.size())), "\r\n");
  if (line.starts_with(">lf ")) return client_bytes(line.substr(4), "\n");
  if (line.starts_with(">raw ")) return client_bytes(line.substr(5), "");
  if (line == "batch") {
    if (in_batch_) return fail("nested batch");
    in_batch_ = true;
    return;
  }
  if (line == "end") {
    if (!in_batch_) return fail("end without batch");
    in_batch_ = false;
    std::string bytes;
    bytes.swap(batch_);
    return client_write(bytes);
  }
  if (in_batch_) return fail("only client lines inside a batch: " + line);
  if (line == "tls") return client_handshake();
  if (line == "close") {
    note("C: [closes its end]");
    shutdown(client_.get(), SHUT_WR);
    return settle();
  }
  if (line == "lookup dies" || line == "queue dies") {
    const bool lookup = line.starts_with("lookup");
    note(std::string(lookup ? "lookup" : "queue") + ": [the process dies]");
    (lookup ? lookup_ : queue_).reset();
    return settle();
  }
  if (line.starts_with("wait ")) {
    // Real time, for what is held back on purpose (a delayed greeting): the loop runs at
    // least this long, so a timer due before then has fired, however slow the machine.
    const std::optional<int> ms = number(std::string_view(line).substr(5), 10000);
    if (!ms || *ms == 0) return fail("bad wait: " + line);
    note("[" + std::to_string(*ms) + " ms pass]");
    const timeval tv{0, *ms * 1000};
    event_base_loopexit(runtime_->base(), &tv);
    event_base_dispatch(runtime_->base());
    read_client();
    return settle();
  }
  if (!is_answer(line)) return fail("cannot read script line: " + line);
  // The next such question gets this answer.
  std::istringstream words(line);
  std::string who;
  std::string kind;
  std::string rest;
  words >> who >> kind >> std::ws;
  std::getline(words, rest);
  if (rest.empty()) return fail("no answer in: " + line);
  answers_[kind].push_back(rest);
}

void Transcript::client_write(const std::string& bytes) {
  out_ += as_lines("C: ", bytes);
  std::string_view rest = bytes;
  int stuck = 0;
  while (!rest.empty()) {
    const ssize_t n = client_tls_ ? tls_write(client_tls_.get(), rest.data(), rest.size())
                                  : send(client_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    const bool again =
        client_tls_ ? n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT : n < 0 && errno == EAGAIN;
    if (again) {
      // The server reads what it can take; let it.
      pass();
      read_client();
      if (++stuck > kMaxPasses) return fail("the server reads nothing");
      continue;
    }
    const char* why = client_tls_ ? tls_error(client_tls_.get()) : std::strerror(errno);
    note("C: [cannot write: " + std::string(n < 0 && why ? why : "closed") + "]");
    return;
  }
  settle();
}

// Runs the loop until nothing moves any more.
void Transcript::settle() {
  int quiet = 0;
  for (int i = 0; i < kMaxPasses; ++i) {
    if (!pass()) {
      if (++quiet >= kQuietPasses) return;
    } else {
      quiet = 0;
    }
  }
  fail("the event loop never settled");
}

// One non-blocking round of the loop; true when something happened.
bool Transcript::pass() {
  activity_ = false;
  event_base_loop(runtime_->base(), EVLOOP_NONBLOCK);
  read_client();
  return activity_ || event_base_get_num_events(runtime_->base(), EVENT_BASE_COUNT_ACTIVE) > 0;
}

void Transcript::read_client() {
  // The handshake reads the socket itself.
  if (client_closed_ || !client_ || handshaking_) return;
  std::string got;
  std::string ending;
  char buf[65536];
  for (;;) {
    if (client_tls_) {
      const ssize_t n = tls_read(client_tls_.get(), buf, sizeof buf);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) break;
      client_closed_ = true;
      // The library's words for a TLS failure vary with its version; what happened does not.
      char byte = 0;
      const bool eof = recv(client_.get(), &byte, 1, MSG_PEEK) == 0;
      ending = n == 0 ? ", TLS close_notify first"
                      : (eof ? ", no TLS close_notify first" : ", TLS error");
      break;
    }
    const ssize_t n = recv(client_.get(), buf, sizeof buf, 0);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) client_closed_ = true;
    break;
  }
  if (!got.empty()) {
    activity_ = true;
    out_ += as_lines("S: ", got);
  }
  if (client_closed_) {
    activity_ = true;
    note("S: [closes the connection" + ending + "]");
  }
}

// The client starts TLS on its connection (after 220 to STARTTLS, or at once on smtps) and
// runs the handshake against the server on the same loop. Certificates are not checked:
// the transcript is about the session, not about PKI.
void Transcript::client_handshake() {
  TlsConfigPtr config(tls_config_new());
  TlsPtr tls(tls_client());
  if (!config || !tls) return fail("tls_client");
  tls_config_insecure_noverifycert(config.get());
  tls_config_insecure_noverifyname(config.get());
  if (tls_configure(tls.get(), config.get()) != 0 ||
      tls_connect_socket(tls.get(), client_.get(), "mx.test") != 0)
    return fail(std::string("tls_connect_socket: ") + tls_error(tls.get()));
  note("C: [TLS handshake]");
  handshaking_ = true;
  for (int i = 0; i < kMaxPasses; ++i) {
    const int rc = tls_handshake(tls.get());
    if (rc == TLS_WANT_POLLIN || rc == TLS_WANT_POLLOUT) {
      pass();
      continue;
    }
    handshaking_ = false;
    if (rc != 0) {
      const char* why = tls_error(tls.get());
      note(std::string("C: [TLS handshake failed: ") + (why ? why : "?") + "]");
      return settle();
    }
    note("C: [TLS established: " + tls_description(tls.get()) + "]");
    client_tls_ = std::move(tls);
    return settle();
  }
  handshaking_ = false;
  fail("the TLS handshake never finished");
}

// --- the files -------------------------------------------------------------------------------

std::optional<Script> read_script(const fs::path& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path.string();
    return std::nullopt;
  }
  Script s;
  bool settings = true;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.starts_with("#")) continue;
    std::istringstream words(line);
    std::string word;
    words >> word;
    if (settings && word == "listener") {
      std::string kind;
      std::string option;
      words >> kind >> option;
      if (kind == "smtp")
        s.role = config::ListenerRole::smtp;
      else if (kind == "submission")
        s.role = config::ListenerRole::submission;
      else if (kind == "smtps")
        s.role = config::ListenerRole::smtps;
      else {
        error = "unknown listener: " + kind;
        return std::nullopt;
      }
      s.listener_name = kind;
      s.plaintext_auth = option == "plaintext-auth";
      continue;
    }
    if (settings && word == "tls") {
      s.tls = true;
      continue;
    }
    if (settings && word == "without-lookup") {
      s.without_lookup = true;
      continue;
    }
    if (settings && word == "auth") {
      s.auth = true;
      continue;
    }
    if (settings && word == "client") {
      words >> s.client;
      continue;
    }
    if (settings && word == "busy") {
      std::string address;
      words >> address;
      s.busy.push_back(address);
      continue;
    }
    if (settings && word == "limit") {
      std::string name;
      uint64_t value = 0;
      words >> name >> value;
      if (!words || !set_limit(s.limits, name, value)) {
        error = "bad limit: " + line;
        return std::nullopt;
      }
      continue;
    }
    settings = false;
    s.steps.push_back(line);
  }
  return s;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A unified-style line diff (longest common subsequence), enough to see what moved.
std::string diff(const std::string& expected, const std::string& actual) {
  const auto a = split_lines(expected);
  const auto b = split_lines(actual);
  std::vector<std::vector<uint32_t>> lcs(a.size() + 1, std::vector<uint32_t>(b.size() + 1, 0));
  for (size_t i = a.size(); i-- > 0;)
    for (size_t j = b.size(); j-- > 0;)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  std::string out = "--- expected\n+++ actual\n";
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && j < b.size() && a[i] == b[j]) {
      out += "  " + a[i] + "\n";
      ++i;
      ++j;
    } else if (i < a.size() && (j == b.size() || lcs[i + 1][j] >= lcs[i][j + 1])) {
      out += "- " + a[i++] + "\n";
    } else {
      out += "+ " + b[j++] + "\n";
    }
  }
  return out;
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kDataDir, ec))
    if (entry.path().extension() == ".in") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

class SmtpTranscript : public testing::TestWithParam<std::string> {};

TEST_P(SmtpTranscript, MatchesGolden) {
  const fs::path in = kDataDir / (GetParam() + ".in");
  const fs::path out = kDataDir / (GetParam() + ".out");
  std::string error;
  const auto script = read_script(in, error);
  ASSERT_TRUE(script) << error;
  Transcript transcript(*script);
  const std::string actual = transcript.run();
  ASSERT_EQ(actual.find("harness error:"), std::string::npos) << actual;
  const char* update = std::getenv("POSTERN_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(out, std::ios::binary | std::ios::trunc) << actual;
    return;
  }
  ASSERT_TRUE(fs::exists(out)) << out
                               << " is missing; run with POSTERN_UPDATE_GOLDEN=1 and "
                                  "read what it wrote";
  const std::string expected = read_file(out);
  EXPECT_TRUE(expected == actual) << out << " differs:\n" << diff(expected, actual);
}

INSTANTIATE_TEST_SUITE_P(Golden, SmtpTranscript, testing::ValuesIn(case_names()),
                         [](const testing::TestParamInfo<std::string>& param_info) {
                           std::string name = param_info.param;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// Every .out belongs to a .in (a renamed case leaves no stale golden file behind), and there
// are cases at all (a wrong data path would otherwise pass with none).
TEST(SmtpTranscriptFiles, EveryOutHasAnIn) {
  size_t cases = 0;
  for (const auto& entry : fs::directory_iterator(kDataDir)) {
    if (entry.path().extension() == ".in") ++cases;
    if (entry.path().extension() != ".out") continue;
    fs::path in = entry.path();
    in.replace_extension(".in");
    EXPECT_TRUE(fs::exists(in)) << entry.path() << " has no .in";
  }
  EXPECT_GE(cases, 20u);
}

}  // namespace
}  // namespace postern::smtp
