// sendmail, mailq and newaliases (sendmail.hpp). A message is read from the standard input and
// written, with its envelope, into the spool's offline area as a file of the caller's own;
// the daemon picks it up from there, at once when it runs and at its start otherwise, and
// takes the file's owner as the sender's identity. Nothing here is trusted by the daemon: it
// is the caller's own program, and every check that matters is made again by the parent
// (smtpd/offline.hpp) and the queue (queue/submission.hpp).
#include "control/smtpctl/sendmail.hpp"

#include <fcntl.h>
#include <getopt.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/mail/commands.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "postern_paths.h"
#include "queue/submission.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpctl {
namespace {

// What sendmail needs of the configuration; the defaults when the file is not readable by
// the caller (the daemon's configuration need not be world-readable).
struct Site {
  std::string spool_dir = "/var/spool/postern";
  std::string socket = "/run/postern/smtpd.sock";
  uint64_t max_size = 35 * 1024 * 1024;
  std::string hostname;  // as the configuration names this host; else gethostname()
  std::vector<std::string> aliases;
};

struct Options {
  char mode = 'm';           // -b: m (mail), p (mailq), i (newaliases)
  bool extract = false;      // -t
  bool ignore_dots = false;  // -i, -oi
  bool run_queue = false;    // -q
  std::optional<std::string> sender;
  std::string full_name;
  std::optional<std::string> config;
  std::vector<std::string> recipients;
};

void usage() {
  std::fprintf(stderr,
               "usage: sendmail [-t] [-i] [-f sender] [-F name] [-C config] [recipient ...]\n"
               "       sendmail -bp | mailq      sendmail -bi | newaliases      sendmail -q\n");
}

Result<Site> read_site(const std::optional<std::string>& named) {
  Site site;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) site.hostname = host;
  const std::string path = named.value_or(POSTERN_CONFIG_FILE);
  if (!named && access(path.c_str(), R_OK) != 0) return site;
  auto loaded = smtpd::load_config(path);
  if (!loaded.ok()) {
    std::string text;
    for (const auto& e : loaded.error()) text += (text.empty() ? "" : "\n") + e.to_string();
    return make_error(text);
  }
  site.spool_dir = loaded->spool_dir;
  site.socket = loaded->control.socket_path;
  site.max_size = loaded->smtp.limits.message_size;
  site.hostname = loaded->queue.hostname;
  for (const auto& domain : loaded->lookup.domains)
    if (domain.aliases &&
        std::find(site.aliases.begin(), site.aliases.end(), *domain.aliases) == site.aliases.end())
      site.aliases.push_back(*domain.aliases);
  return site;
}

// The addresses of a header field's value or of a command-line argument: "a@b, Name <c@d>,
// group: e@f;". Comments and display names are dropped; what is left is checked by the queue.
void add_addresses(std::string_view list, std::vector<std::string>& out) {
  std::string current;
  int angle = 0;
  int comment = 0;
  bool quoted = false;
  std::string in_angle;
  auto flush = [&] {
    std::string a = in_angle.empty() ? current : in_angle;
    const auto first = a.find_first_not_of(" \t\r\n");
    const auto last = a.find_last_not_of(" \t\r\n");
    a = first == std::string::npos ? "" : a.substr(first, last - first + 1);
    if (!a.empty()) out.push_back(a);
    current.clear();
    in_angle.clear();
  };
  for (size_t i = 0; i < list.size(); ++i) {
    const char c = list[i];
    std::string& into = angle ? in_angle : current;
    if (quoted) {
      into += c;
      if (c == '\\' && i + 1 < list.size())
        into += list[++i];
      else if (c == '"')
        quoted = false;
      continue;
    }
    if (comment) {
      comment += c == '(' ? 1 : c == ')' ? -1 : 0;
      continue;
    }
    if (c == '(') {
      comment = 1;
    } else if (c == '"') {
      quoted = true;
      into += c;
    } else if (c == '<') {
      angle = 1;
      in_angle.clear();
    } else if (c == '>') {
      angle = 0;
    } else if (angle) {
      in_angle += c;
    } else if (c == ':') {
      current.clear();  // a group's name
    } else if (c == ',' || c == ';') {
      flush();
    } else {
      current += c;
    }
  }
  flush();
}

// -t: the recipients of To:, Cc: and Bcc:, and the message without its Bcc: fields.
std::string extract_recipients(const std::string& message, std::vector<std::string>& out) {
  std::string kept;
  size_t pos = 0;
  bool dropping = false;
  bool collecting = false;  // in a To:, Cc: or Bcc: field
  std::string value;
  auto finish_field = [&] {
    if (collecting) add_addresses(value, out);
    collecting = false;
    value.clear();
  };
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    eol = eol == std::string::npos ? message.size() : eol + 1;
    const std::string_view line(message.data() + pos, eol - pos);
    std::string_view bare = line;
    while (!bare.empty() && (bare.back() == '\n' || bare.back() == '\r')) bare.remove_suffix(1);
    if (bare.empty()) break;  // the end of the header
    const bool continuation = bare.front() == ' ' || bare.front() == '\t';
    if (!continuation) {
      finish_field();
      const size_t colon = bare.find(':');
      if (colon == std::string_view::npos) break;  // no header (any more)
      std::string name(bare.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      dropping = name == "bcc";
      if (name == "to" || name == "cc" || name == "bcc") {
        collecting = true;
        value = std::string(bare.substr(colon + 1));
      }
    } else if (collecting) {
      value += " " + std::string(bare);
    }
    if (!dropping) kept += line;
    pos = eol;
  }
  finish_field();
  kept += message.substr(pos);
  return kept;
}

// The standard input: the whole message, or (without -i) up to a line of a single dot.
Result<std::string> read_message(bool ignore_dots, uint64_t max_size) {
  std::string message;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("reading the message");
    if (n == 0) break;
    message.append(buf, static_cast<size_t>(n));
    if (message.size() > max_size) return make_error("the message is larger than the limit");
  }
  if (!ignore_dots) {
    for (size_t pos = 0; pos < message.size();) {
      size_t eol = message.find('\n', pos);
      const size_t end = eol == std::string::npos ? message.size() : eol;
      std::string_view line(message.data() + pos, end - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line == ".") {
        message.resize(pos);
        break;
      }
      if (eol == std::string::npos) break;
      pos = eol + 1;
    }
  }
  return message;
}

bool one_line(const std::string& v) {
  return !v.empty() && v.size() <= queue::kMaxSubmissionField &&
         std::none_of(v.begin(), v.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// Writes the submission as a new file of the caller's, invisible to the daemon (a leading
// dot) until it is whole and on disk.
Status drop_offline(const Site& site, const std::string& bytes) {
  const std::string area = site.spool_dir + "/offline";
  // The area may be searched and written but not read by the caller: O_PATH needs neither.
  const UniqueFd dir(open(area.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return errno_error("cannot open the offline area " + area);
  unsigned char random[16];
  if (getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random))
    return errno_error("getrandom");
  std::string name;
  for (unsigned char b : random) {
    static constexpr char kHex[] = "0123456789abcdef";
    name += kHex[b >> 4];
    name += kHex[b & 15];
  }
  const std::string partial = "." + name;
  const UniqueFd file(openat(dir.get(), partial.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file) return errno_error("cannot create a file in " + area);
  Status written = write_all(file.get(), bytes);
  if (written.ok() && fsync(file.get()) != 0) written = errno_error("fsync");
  if (written.ok() && renameat(dir.get(), partial.c_str(), dir.get(), name.c_str()) != 0)
    written = errno_error("rename");
  if (!written.ok()) {
    unlinkat(dir.get(), partial.c_str(), 0);
    return make_error("writing to " + area + ": " + written.error().message);
  }
  return ok_status();
}

// "<a@b>" as well as "a@b"; "<>" and "" are the null sender (""). nullopt: not one address.
std::optional<std::string> sender_address(std::string_view text) {
  std::vector<std::string> one;
  add_addresses(text, one);
  if (one.size() > 1 || (!one.empty() && !one_line(one.front()))) return std::nullopt;
  return one.empty() ? std::string() : one.front();
}

int submit(const Options& o, const Site& site) {
  Result<std::string> message = read_message(o.ignore_dots, site.max_size);
  if (!message.ok()) {
    std::fprintf(stderr, "sendmail: %s\n", message.error().message.c_str());
    return EX_DATAERR;
  }
  std::vector<std::string> recipients;
  for (const std::string& arg : o.recipients) add_addresses(arg, recipients);
  std::string body = o.extract ? extract_recipients(message.value(), recipients) : message.value();
  if (recipients.empty()) {
    std::fprintf(stderr, "sendmail: no recipients%s\n",
                 o.extract ? " on the command line or in the header" : " given");
    return EX_USAGE;
  }
  if (recipients.size() > queue::kMaxSubmissionRecipients) {
    std::fprintf(stderr, "sendmail: more than %zu recipients\n", queue::kMaxSubmissionRecipients);
    return EX_USAGE;
  }
  for (const std::string& r : recipients)
    if (!one_line(r)) {
      std::fprintf(stderr, "sendmail: bad recipient address\n");
      return EX_DATAERR;
    }
  std::optional<std::string> sender;
  if (o.sender) {
    sender = sender_address(*o.sender);
    if (!sender) {
      std::fprintf(stderr, "sendmail: bad sender address\n");
      return EX_DATAERR;
    }
  }
  if (!o.full_name.empty() && !one_line(o.full_name)) {
    std::fprintf(stderr, "sendmail: bad full name\n");
    return EX_DATAERR;
  }
  const std::string file =
      queue::submission_header(sender, o.full_name, recipients, body.size()) + body;
  if (Status dropped = drop_offline(site, file); !dropped.ok()) {
    std::fprintf(stderr, "sendmail: %s\n", dropped.error().message.c_str());
    return EX_TEMPFAIL;
  }
  return EX_OK;
}

// -bs: SMTP on the standard input and output, as Postfix's sendmail -bs offers it to programs
// that speak SMTP to a command. Each message is written to the offline area like any other
// submission, the MAIL FROM address taken as -f would be (recorded when the user is not
// trusted). Only what a submission needs: HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
class StdioSmtp {
 public:
  explicit StdioSmtp(const Site& site) : site_(site) {}

  int run() {
    say("220 " + site_.hostname + " ESMTP Postern (sendmail -bs)");
    std::string line;
    while (read_line(line)) {
      if (line.size() > mail::kMaxCommandLine) {
        say("500 5.5.2 Line too long");
        continue;
      }
      const mail::ParsedLine parsed = mail::parse_command(line);
      if (parsed.error != mail::SyntaxError::none) {
        say(parsed.error == mail::SyntaxError::unknown_verb ? "502 5.5.1 Command not recognized"
                                                            : "501 5.5.4 " + parsed.detail);
        continue;
      }
      if (!command(parsed.command)) return EX_OK;
    }
    return EX_OK;  // the peer went away
  }

 private:
  static void say(const std::string& reply) {
    std::fputs((reply + "\r\n").c_str(), stdout);
    std::fflush(stdout);
  }

  // A line without its line end; false at the end of the input.
  static bool read_line(std::string& line) {
    line.clear();
    for (int c = 0; (c = std::getchar()) != EOF;) {
      if (c == '\n') {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return true;
      }
      if (line.size() <= kMaxLine) line += static_cast<char>(c);
    }
    return !line.empty();
  }

  // False after QUIT.
  bool command(const mail::Command& c) {
    switch (c.verb) {
      case mail::Verb::helo:
      case mail::Verb::ehlo:
        reset();
        say("250 " + site_.hostname);
        return true;
      case mail::Verb::mail:
        if (sender_) {
          say("503 5.5.1 Sender already given");
          return true;
        }
        sender_ = sender_address(c.path);
        say(sender_ ? "250 2.1.0 Ok" : "501 5.1.7 Bad sender address");
        return true;
      case mail::Verb::rcpt: {
        if (!sender_) {
          say("503 5.5.1 Need MAIL first");
          return true;
        }
        if (recipients_.size() >= queue::kMaxSubmissionRecipients) {
          say("452 4.5.3 Too many recipients");
          return true;
        }
        std::vector<std::string> one;
        add_addresses(c.path, one);
        if (one.size() != 1 || !one_line(one.front())) {
          say("501 5.1.3 Bad recipient address");
          return true;
        }
        recipients_.push_back(one.front());
        say("250 2.1.5 Ok");
        return true;
      }
      case mail::Verb::data:
        if (recipients_.empty()) {
          say("503 5.5.1 Need RCPT first");
          return true;
        }
        data();
        return true;
      case mail::Verb::rset:
        reset();
        say("250 2.0.0 Ok");
        return true;
      case mail::Verb::noop:
        say("250 2.0.0 Ok");
        return true;
      case mail::Verb::quit:
        say("221 2.0.0 Bye");
        return false;
      default:
        say("502 5.5.1 Command not implemented");
        return true;
    }
  }

  void data() {
    say("354 End data with <CR><LF>.<CR><LF>");
    std::string body;
    std::string line;
    bool too_big = false;
    bool ended = false;
    while (read_line(line)) {
      if (line == ".") {
        ended = true;
        break;
      }
      if (line.starts_with('.')) line.erase(0, 1);  // dot-stuffing (RFC 5321 4.5.2)
      too_big = too_big || body.size() + line.size() + 1 > site_.max_size;
      if (!too_big) body += line + "\n";
    }
    if (!ended) return;  // the input ended inside DATA: nothing was promised
    if (too_big) {
      say("552 5.3.4 Message too big");
    } else if (Status dropped = drop_offline(
                   site_, queue::submission_header(sender_, "", recipients_, body.size()) + body);
               !dropped.ok()) {
      std::fprintf(stderr, "sendmail: %s\n", dropped.error().message.c_str());
      say("451 4.3.0 Cannot write the message");
    } else {
      say("250 2.0.0 Ok: queued");
    }
    reset();
  }

  void reset() {
    sender_.reset();
    recipients_.clear();
  }

  static constexpr size_t kMaxLine = 1000 * 1000;  // DATA lines; commands are checked apart
  const Site& site_;
  std::optional<std::string> sender_;
  std::vector<std::string> recipients_;
};

// A request to the running daemon through smtpctl's own command line.
int control_command(ControlCommand control, const Site& site, std::vector<std::string> words) {
  std::vector<std::string> args = {"smtpctl", "-s", site.socket};
  args.insert(args.end(), words.begin(), words.end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  optind = 1;  // getopt starts over for smtpctl's options
  return control(static_cast<int>(args.size()), argv.data());
}

}  // namespace

bool is_sendmail_name(std::string_view program) {
  const size_t slash = program.rfind('/');
  if (slash != std::string_view::npos) program.remove_prefix(slash + 1);
  return program == "sendmail" || program == "mailq" || program == "newaliases";
}

int sendmail_main(int argc, char** argv, ControlCommand control) {
  std::string_view program = argv[0];
  if (const size_t slash = program.rfind('/'); slash != std::string_view::npos)
    program.remove_prefix(slash + 1);
  Options o;
  if (program == "mailq") o.mode = 'p';
  if (program == "newaliases") o.mode = 'i';
  // Sendmail's options as Postfix's sendmail takes them: those that change nothing here are
  // accepted and ignored, so that the programs that pass them keep working.
  static const char kOptions[] = "+A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:q::r:tvx";
  for (int opt = 0; (opt = getopt(argc, argv, kOptions)) != -1;) {
    switch (opt) {
      case 'b':
        if (std::strlen(optarg) != 1 || std::strchr("mpis", optarg[0]) == nullptr) {
          std::fprintf(stderr, "sendmail: -b%s is not supported\n", optarg);
          return EX_USAGE;
        }
        o.mode = optarg[0];
        break;
      case 'C':
        o.config = optarg;
        break;
      case 'F':
        o.full_name = optarg;
        break;
      case 'f':
      case 'r':
        o.sender = optarg;
        break;
      case 'i':
        o.ignore_dots = true;
        break;
      case 'o':
        if (std::strcmp(optarg, "i") == 0) o.ignore_dots = true;  // -oi; other -oX ignored
        break;
      case 'q':
        o.run_queue = true;
        break;
      case 't':
        o.extract = true;
        break;
      case '?':
        usage();
        return EX_USAGE;
      default:  // -A -B -G -I -L -N -O -R -U -V -X -c -e -h -m -n -p -v -x: no effect here
        break;
    }
  }
  for (int i = optind; i < argc; ++i) o.recipients.emplace_back(argv[i]);

  Result<Site> site = read_site(o.config);
  if (!site.ok()) {
    std::fprintf(stderr, "sendmail: %s\n", site.error().message.c_str());
    return EX_CONFIG;
  }
  if (o.run_queue) return control_command(control, site.value(), {"schedule", "all"});
  switch (o.mode) {
    case 'p':
      return control_command(control, site.value(), {"show", "queue"});
    case 'i': {
      // Aliases are text files that lookup reads itself: rebuilding them is reloading them.
      if (site->aliases.empty()) {
        std::fprintf(stderr, "newaliases: no aliases file in the configuration\n");
        return EX_CONFIG;
      }
      int status = EX_OK;
      for (const std::string& path : site->aliases) {
        const int one = control_command(control, site.value(), {"update", "table", path});
        if (one != 0) status = EX_UNAVAILABLE;
      }
      return status;
    }
    case 's':
      return StdioSmtp(site.value()).run();
    default:
      return submit(o, site.value());
  }
}

}  // namespace postern::smtpctl
