// Loading smtpd.yaml: libyaml events become a small tree of nodes that remember where they
// were written, and one walk over that tree fills the typed Config; see config.hpp.
// Input is untrusted text (fuzzed): every limit is checked here, and nothing is acted upon.
#include "common/config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <utility>

#include "common/util/fd.hpp"

namespace postern::config {
namespace {

// Far above any sane configuration, low enough that a mistaken path (a log file, /dev/zero)
// is refused before it costs anything.
constexpr size_t kMaxFileSize = size_t{1} << 20;
// The schema needs three levels; the limit bounds recursion in the tree builder.
constexpr int kMaxDepth = 32;
// Listener names show up in logs and smtpctl output, one word each.
constexpr size_t kMaxListenerName = 64;
// Offending text is echoed in messages: keep them one readable line.
constexpr size_t kMaxQuoted = 64;

// A DNSBL query is <reversed client address>.<zone>, and an IPv6 address reversed into
// nibbles takes 64 octets ("b.a.9.8...."): the zone must leave room for them within the 253
// octets a name may have in text (RFC 1035 2.3.4: 255 on the wire).
constexpr size_t kMaxZoneName = 253 - 64;
// Weights and thresholds of DNSBL zones; a count beyond it would be a typo.
constexpr uint64_t kMaxWeight = 1000;
// Seconds per DNS question: longer would hold a client at the greeting for minutes.
constexpr uint64_t kMaxDnsTimeout = 60;

constexpr std::array<std::string_view, 15> kTopKeys = {
    "hostname",    "user",         "queue_user",       "spool",  "empty_dir",
    "control",     "listeners",    "domains",          "limits", "tls",
    "credentials", "virtual_user", "trusted_networks", "dns",    "run_dir"};
constexpr std::array<std::string_view, 2> kTlsKeys = {"certificate", "key"};
constexpr std::array<std::string_view, 11> kDomainKeys = {
    "name", "users",   "aliases",        "catch_all",   "maildir", "mbox",
    "lmtp", "command", "alias_commands", "alias_files", "min_uid"};
constexpr std::array<std::string_view, 2> kAliasSourceNames = {"aliases", "include"};
constexpr std::array<std::string_view, 13> kLimitKeys = {
    "message_size",     "recipients",      "errors",       "sessions",    "sessions_per_ip",
    "command_timeout",  "data_timeout",    "expire",       "retry_first", "retry_max",
    "delivery_timeout", "connection_rate", "delay_warning"};
constexpr std::array<std::string_view, 2> kControlKeys = {"socket", "group"};
constexpr std::array<std::string_view, 5> kListenerKeys = {"address", "role", "name",
                                                           "plaintext_auth", "checks"};
constexpr std::array<std::string_view, 4> kChecksKeys = {"fcrdns", "dnsbl", "threshold", "zones"};
constexpr std::array<std::string_view, 3> kZoneKeys = {"zone", "codes", "weight"};
constexpr std::array<std::string_view, 2> kDnsKeys = {"resolvers", "timeout"};
constexpr std::array<std::string_view, 3> kCheckActionNames = {"off", "tag", "refuse"};
constexpr std::array<std::string_view, kListenerRoleCount> kRoleNames = {"smtp", "submission",
                                                                         "smtps"};

std::string errno_text(int err) {
  char buffer[256];
  // GNU strerror_r: may return a static string instead of filling buffer.
  return strerror_r(err, buffer, sizeof buffer);
}

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (const std::string_view word : words) {
    if (!out.empty()) out += ", ";
    out += word;
  }
  return out;
}

// Control characters (C0 and C1; YAML escapes can produce both) would let a hostile file forge
// extra lines or terminal sequences in logs.
std::string quote(std::string_view text) {
  size_t n = std::min(text.size(), kMaxQuoted);
  // Never cut a UTF-8 sequence in half.
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xc0) == 0x80) --n;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else if (c == 0xc2 && i + 1 < n && static_cast<unsigned char>(text[i + 1]) < 0xa0) {
      const auto c1 = static_cast<unsigned char>(text[++i]);
      out += "\\u00";
      out += kHex[c1 >> 4];
      out += kHex[c1 & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < text.size()) out += "...";
  out += "'";
  return out;
}

struct Mark {
  int line = 0;  // 1-based, as editors count
  int column = 0;
};

Mark to_mark(const yaml_mark_t& mark) {
  return Mark{static_cast<int>(mark.line) + 1, static_cast<int>(mark.column) + 1};
}

struct MapEntry;

// What the walk needs from YAML: strings, lists and mappings, each with its position.
struct Node {
  enum class Kind : uint8_t {
    scalar,
    sequence,
    mapping,
    invalid,  // an alias: already reported, the walk skips it silently
  };
  Kind kind = Kind::invalid;
  Mark mark;
  std::string text;               // scalar
  std::vector<Node> items;        // sequence
  std::vector<MapEntry> entries;  // mapping, in file order
};

struct MapEntry {
  Node key;
  Node value;
};

class Reporter {
 public:
  explicit Reporter(const std::string& file) : file_(file) {}

  void at(Mark mark, std::string message) {
    errors_.push_back(ConfigError{file_, mark.line, mark.column, std::move(message)});
  }
  void whole_file(std::string message) { at(Mark{}, std::move(message)); }

  bool empty() const { return errors_.empty(); }
  // In file order, whatever order the checks ran in; errors about the whole file first.
  ConfigErrors take() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    return std::move(errors_);
  }

 private:
  const std::string& file_;
  ConfigErrors errors_;
};

class Parser {
 public:
  Parser() : ready_(yaml_parser_initialize(&parser_) != 0) {}
  ~Parser() {
    if (ready_) yaml_parser_delete(&parser_);
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  bool ready() const { return ready_; }
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_{};
  bool ready_;
};

class Event {
 public:
  Event() = default;
  ~Event() { reset(); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Fills the event from the parser; false on a YAML error, which the parser describes.
  bool next(yaml_parser_t* parser) {
    reset();
    filled_ = yaml_parser_parse(parser, &event_) != 0;
    return filled_;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  void reset() {
    if (filled_) yaml_event_delete(&event_);
    filled_ = false;
  }
  yaml_event_t event_{};
  bool filled_ = false;
};

// Turns the event stream into one Node. Anchors, aliases and tags are refused: the schema
// needs none of them, and aliases are how YAML files grow exponentially.
class TreeBuilder {
 public:
  TreeBuilder(std::string_view text, Reporter& reporter) : text_(text), reporter_(reporter) {}

  // The root of the document, or nullopt when nothing can be walked (errors reported).
  std::optional<Node> build() {
    if (!parser_.ready()) {
      reporter_.whole_file("out of memory");
      return std::nullopt;
    }
    yaml_parser_set_input_string(
        parser_.get(), reinterpret_cast<const unsigned char*>(text_.data()), text_.size());
    Event event;
    if (!next(event)) return std::nullopt;  // STREAM-START
    if (!next(event)) return std::nullopt;
    if (event->type == YAML_STREAM_END_EVENT) {
      reporter_.whole_file("empty configuration (expected a mapping with at least 'listeners')");
      return std::nullopt;
    }
    if (!next(event)) return std::nullopt;  // past DOCUMENT-START
    std::optional<Node> root = node(*event, 1);
    if (!root) return std::nullopt;
    if (!next(event)) return std::nullopt;  // DOCUMENT-END
    if (!next(event)) return std::nullopt;
    if (event->type == YAML_DOCUMENT_START_EVENT) {
      // Stop here: whatever follows would be ignored, so it must not be half-checked either.
      reporter_.at(to_mark(event->start_mark),
                   "multiple documents are not supported (expected a single mapping)");
    }
    return root;
  }

 private:
  bool next(Event& event) {
    if (event.next(parser_.get())) return true;
    report_parser_error();
    return false;
  }

  void report_parser_error() {
    const yaml_parser_t& p = *parser_.get();
    const std::string problem = p.problem != nullptr ? p.problem : "unknown error";
    switch (p.error) {
      case YAML_MEMORY_ERROR:
        reporter_.whole_file("out of memory while parsing");
        return;
      case YAML_READER_ERROR:
        // The reader reports a byte offset, not a mark.
        reporter_.at(mark_of_offset(p.problem_offset), "bad encoding: " + problem);
        return;
      default:
        reporter_.at(to_mark(p.problem_mark), "YAML syntax error: " + problem);
        return;
    }
  }

  Mark mark_of_offset(size_t offset) const {
    offset = std::min(offset, text_.size());
    Mark mark{1, 1};
    for (size_t i = 0; i < offset; ++i) {
      const auto c = static_cast<unsigned char>(text_[i]);
      if (c == '\n') {
        ++mark.line;
        mark.column = 1;
      } else if ((c & 0xc0) != 0x80) {
        ++mark.column;  // columns count characters, as libyaml's marks do
      }
    }
    return mark;
  }

  void refuse_decorations(const yaml_char_t* anchor, const yaml_char_t* tag, Mark mark) {
    if (anchor != nullptr) {
      reporter_.at(mark, "anchors are not supported (" +
                             quote("&" + std::string(reinterpret_cast<const char*>(anchor))) + ")");
    }
    if (tag != nullptr) {
      reporter_.at(mark,
                   "tags are not supported (" + quote(reinterpret_cast<const char*>(tag)) + ")");
    }
  }

  // Builds the node that starts with event; depth counts enclosing collections.
  // NOLINTNEXTLINE(misc-no-recursion): bounded by kMaxDepth
  std::optional<Node> node(const yaml_event_t& event, int depth) {
    Node out;
    out.mark = to_mark(event.start_mark);
    switch (event.type) {
      case YAML_ALIAS_EVENT:
        reporter_.at(out.mark, "aliases are not supported");
        return out;
      case YAML_SCALAR_EVENT: {
        const auto& scalar = event.data.scalar;
        refuse_decorations(scalar.anchor, scalar.tag, out.mark);
        out.kind = Node::Kind::scalar;
        out.text.assign(reinterpret_cast<const char*>(scalar.value), scalar.length);
        return out;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        break;
      default:
        // libyaml only delivers the events above where a node is expected.
        reporter_.at(out.mark, "YAML syntax error: unexpected event");
        return std::nullopt;
    }
    if (depth > kMaxDepth) {
      reporter_.at(out.mark, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
      return std::nullopt;
    }
    const bool is_mapping = event.type == YAML_MAPPING_START_EVENT;
    if (is_mapping) {
      refuse_decorations(event.data.mapping_start.anchor, event.data.mapping_start.tag, out.mark);
      out.kind = Node::Kind::mapping;
    } else {
      refuse_decorations(event.data.sequence_start.anchor, event.data.sequence_start.tag, out.mark);
      out.kind = Node::Kind::sequence;
    }
    const yaml_event_type_t end = is_mapping ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    Event child;
    for (;;) {
      if (!next(child)) return std::nullopt;
      if (child->type == end) return out;
      std::optional<Node> first = node(*child, depth + 1);
      if (!first) return std::nullopt;
      if (!is_mapping) {
        out.items.push_back(std::move(*first));
        continue;
      }
      if (!next(child)) return std::nullopt;
      std::optional<Node> second = node(*child, depth + 1);
      if (!second) return std::nullopt;
      out.entries.push_back(MapEntry{std::move(*first), std::move(*second)});
    }
  }

  std::string_view text_;
  Reporter& reporter_;
  Parser parser_;
};

std::string default_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// A mailbox path template: %u (the local part) and %d (the domain) stand for whole path
// segments, so no recipient can climb out of it; it needs %u unless it starts in the home
// directory of a system user ("~/").
bool valid_mailbox_template(std::string_view path, bool system_users) {
  const bool home = system_users && path.starts_with("~/");
  bool has_user = false;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') continue;
    if (i + 1 >= path.size() || (path[i + 1] != 'u' && path[i + 1] != 'd')) return false;
    if (i == 0 || path[i - 1] != '/' || (i + 2 < path.size() && path[i + 2] != '/')) return false;
    has_user = has_user || path[i + 1] == 'u';
    ++i;
  }
  return has_user || home;
}

bool valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  char previous = '.';
  for (const char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      // RFC 1035 2.3.1: labels are 1-63 characters and do not end with a hyphen.
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else if (alnum || c == '-') {
      if (c == '-' && label == 0) return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    previous = c;
  }
  return label > 0 && previous != '-';
}

// A name for getpwnam/getgrnam: ':' would break /etc/passwd and whitespace is a typo.
bool valid_account_name(std::string_view name) {
  if (name.empty()) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ':' || u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

bool valid_listener_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxListenerName) return false;
  for (const char c : name) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

enum class ResolverProblem : uint8_t { syntax, port_range };

// "IP" or "IP@port", written back canonically ("::1@53", "192.0.2.1").
Result<std::string, ResolverProblem> read_resolver(std::string_view text) {
  std::string_view host = text;
  std::optional<std::string_view> port;
  if (const size_t at = text.rfind('@'); at != std::string_view::npos) {
    host = text.substr(0, at);
    port = text.substr(at + 1);
  }
  const std::optional<sockaddr_storage> address = inet::parse_ip_address(host);
  if (!address) return ResolverProblem::syntax;
  std::string out = inet::address_text(*address, inet::Mapped::as_ipv6);
  if (!port) return out;
  if (port->empty()) return ResolverProblem::syntax;
  uint32_t number = 0;
  for (const char c : *port) {
    if (c < '0' || c > '9') return ResolverProblem::syntax;
    number = std::min<uint32_t>(number * 10 + static_cast<uint32_t>(c - '0'), 1000000);
  }
  if (number < 1 || number > 65535) return ResolverProblem::port_range;
  return out + "@" + std::to_string(number);
}

// A DNSBL zone, already lower-cased and without its trailing dot. It is a DNS name, not a host
// name (RFC 2181 11), so underscores are allowed: some real zones have them.
bool valid_zone_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxZoneName) return false;
  size_t label = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!allowed || ++label > 63) return false;
  }
  return label > 0;
}

std::vector<Network> default_trusted_networks() {
  std::vector<Network> out;
  for (const std::string_view text : {"127.0.0.0/8", "::1"}) {
    if (auto network = inet::parse_network(text)) out.push_back(*network);
  }
  return out;
}

// Fills a Config from the tree, reporting every problem rather than stopping at the first.
class Walker {
 public:
  Walker(const std::string& file, std::string base_dir, Reporter& reporter)
      : file_(file), base_dir_(std::move(base_dir)), reporter_(reporter) {}

  Config walk(const Node& root) {
    Config config;
    config.file = file_;
    config.hostname = default_hostname();
    if (root.kind == Node::Kind::invalid) return config;
    if (root.kind == Node::Kind::scalar && root.text.empty()) {
      reporter_.whole_file("empty configuration (expected a mapping with at least 'listeners')");
      return config;
    }
    if (root.kind != Node::Kind::mapping) {
      reporter_.at(root.mark, "top level must be a mapping of settings (key: value)");
      return config;
    }
    const auto fields = check_keys(root, "top level", kTopKeys);
    if (const MapEntry* e = fields[0]) {
      if (auto hostname = string_value(*e)) {
        if (valid_hostname(*hostname)) {
          config.hostname = std::move(*hostname);
        } else {
          reporter_.at(e->value.mark,
                       "invalid hostname " + quote(*hostname) +
                           " (expected letters, digits, '-' and '.', 1-253 characters)");
        }
      }
    }
    if (const MapEntry* e = fields[1]) account_value(*e, config.user);
    if (const MapEntry* e = fields[2]) account_value(*e, config.queue_user);
    if (const MapEntry* e = fields[3]) path_value(*e, config.spool_dir);
    if (const MapEntry* e = fields[4]) path_value(*e, config.empty_dir);
    if (const MapEntry* e = fields[5]) walk_control(*e, config.control);
    if (const MapEntry* e = fields[6]) {
      walk_listeners(*e, config.listeners);
    } else {
      reporter_.at(root.mark, "no listeners configured (expected a 'listeners' list)");
    }
    if (const MapEntry* e = fields[7]) walk_domains(*e, config.domains);
    if (const MapEntry* e = fields[8]) walk_limits(*e, config.limits);
    if (const MapEntry* e = fields[9]) walk_tls(*e, config.tls);
    if (const MapEntry* e = fields[10]) {
      std::string path;
      if (path_value(*e, path)) config.credentials = std::move(path);
    }
    if (const MapEntry* e = fields[11]) {
      std::string name;
      account_value(*e, name);
      if (!name.empty()) config.virtual_user = std::move(name);
    }
    if (const MapEntry* e = fields[12]) {
      walk_trusted_networks(*e, config.trusted_networks);
    } else {
      config.trusted_networks = default_trusted_networks();
    }
    if (const MapEntry* e = fields[13]) walk_dns(*e, config.dns);
    if (const MapEntry* e = fields[14]) {
      std::string path;
      if (path_value(*e, path)) config.run_dir = std::move(path);
    }
    if (!config.tls) {
      for (const Listener& l : config.listeners)
        if (l.role == ListenerRole::smtps && fields[6] != nullptr)
          reporter_.at(fields[6]->key.mark, "listener " + quote(l.name) +
                                                " is smtps, which needs a 'tls' section with "
                                                "certificate and key");
    }
    return config;
  }

 private:
  // Reports unknown, duplicate and non-string keys; returns the entry for each allowed key.
  template <size_t N>
  std::array<const MapEntry*, N> check_keys(const Node& mapping, std::string_view where,
                                            const std::array<std::string_view, N>& allowed) {
    std::array<const MapEntry*, N> found{};
    std::map<std::string, int, std::less<>> seen;
    for (const MapEntry& entry : mapping.entries) {
      const Node& key = entry.key;
      if (key.kind == Node::Kind::invalid) continue;
      if (key.kind != Node::Kind::scalar) {
        reporter_.at(key.mark, "keys in " + std::string(where) + " must be strings");
        continue;
      }
      const auto [it, inserted] = seen.emplace(key.text, key.mark.line);
      if (!inserted) {
        reporter_.at(key.mark, "duplicate key " + quote(key.text) + " (first at line " +
                                   std::to_string(it->second) + ")");
        continue;
      }
      size_t index = 0;
      while (index < N && allowed[index] != key.text) ++index;
      if (index == N) {
        reporter_.at(key.mark, "unknown key " + quote(key.text) + " in " + std::string(where) +
                                   " (expected one of: " + join(allowed) + ")");
        continue;
      }
      found[index] = &entry;
    }
    return found;
  }

  std::optional<std::string> string_value(const MapEntry& entry) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return std::nullopt;
    if (value.kind != Node::Kind::scalar) {
      reporter_.at(value.mark, quote(entry.key.text) + " must be a string");
      return std::nullopt;
    }
    // "\0" in a double-quoted scalar would silently truncate the value at the C boundary.
    if (value.text.find('\0') != std::string::npos) {
      reporter_.at(value.mark, quote(entry.key.text) + " must not contain NUL characters");
      return std::nullopt;
    }
    return value.text;
  }

  std::optional<bool> bool_value(const MapEntry& entry) {
    auto text = string_value(entry);
    if (!text) return std::nullopt;
    if (*text == "true" || *text == "yes") return true;
    if (*text == "false" || *text == "no") return false;
    reporter_.at(entry.value.mark,
                 quote(entry.key.text) + " must be true or false, not " + quote(*text));
    return std::nullopt;
  }

  void account_value(const MapEntry& entry, std::string& out) {
    auto name = string_value(entry);
    if (!name) return;
    if (!valid_account_name(*name)) {
      reporter_.at(entry.value.mark, "invalid " + quote(entry.key.text) + " value " + quote(*name) +
                                         " (expected a non-empty name without ':' or whitespace)");
      return;
    }
    out = std::move(*name);
  }

  bool path_value(const MapEntry& entry, std::string& out) {
    auto path = string_value(entry);
    if (!path) return false;
    if (path->empty()) {
      reporter_.at(entry.value.mark,
                   quote(entry.key.text) + " must not be empty (expected a path)");
      return false;
    }
    if (path->front() == '/') {
      out = std::move(*path);
      return true;
    }
    if (base_dir_.empty()) {
      reporter_.at(entry.value.mark, "cannot resolve relative path " + quote(*path) +
                                         ": the current directory is unknown");
      return false;
    }
    out = base_dir_;
    if (out.back() != '/') out += '/';
    out += *path;
    return true;
  }

  void walk_control(const MapEntry& entry, Control& control) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::mapping) {
      reporter_.at(value.mark, "'control' must be a mapping");
      return;
    }
    const auto fields = check_keys(value, "'control'", kControlKeys);
    if (const MapEntry* e = fields[0]) {
      std::string path;
      if (path_value(*e, path)) {
        if (path.size() >= sizeof(sockaddr_un::sun_path)) {
          reporter_.at(e->value.mark, "control socket path is too long (" +
                                          std::to_string(path.size()) +
                                          " bytes once resolved; at most " +
                                          std::to_string(sizeof(sockaddr_un::sun_path) - 1) + ")");
        } else {
          control.socket_path = std::move(path);
        }
      }
    }
    if (const MapEntry* e = fields[1]) {
      std::string group;
      account_value(*e, group);
      if (!group.empty()) control.group = std::move(group);
    }
  }

  void walk_tls(const MapEntry& entry, std::optional<Tls>& tls) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::mapping) {
      reporter_.at(value.mark, "'tls' must be a mapping (with certificate and key)");
      return;
    }
    const auto fields = check_keys(value, "'tls'", kTlsKeys);
    Tls t;
    bool ok = true;
    for (size_t i = 0; i < fields.size(); ++i) {
      std::string& out = i == 0 ? t.certificate : t.key;
      if (fields[i] == nullptr) {
        reporter_.at(value.mark, "'tls' has no '" + std::string(kTlsKeys[i]) + "'");
        ok = false;
      } else if (!path_value(*fields[i], out)) {
        ok = false;
      }
    }
    if (ok) tls = std::move(t);
  }

  // "example.org" or {name: example.org, users: [alice, bob]}.
  void walk_domains(const MapEntry& entry, std::vector<Domain>& domains) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'domains' must be a list");
      return;
    }
    std::map<std::string, int, std::less<>> lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      const Node* name_node = &item;
      Domain d;
      if (item.kind == Node::Kind::mapping) {
        const auto fields = check_keys(item, "domain", kDomainKeys);
        if (fields[0] == nullptr) {
          reporter_.at(item.mark, "domain has no 'name'");
          continue;
        }
        name_node = &fields[0]->value;
        if (fields[1] != nullptr && !walk_users(*fields[1], d)) continue;
        bool ok = true;
        if (const MapEntry* e = fields[2]) {
          std::string path;
          if (path_value(*e, path)) {
            d.aliases = std::move(path);
          } else {
            ok = false;
          }
        }
        if (const MapEntry* e = fields[3]) {
          auto target = string_value(*e);
          if (target && !target->empty() && target->size() <= 254 &&
              target->find_first_of(" \t\r\n,:\"|/") == std::string::npos) {
            d.catch_all = std::move(*target);
          } else {
            if (target)
              reporter_.at(e->value.mark, "bad 'catch_all' " + quote(*target) +
                                              " (expected a local part or an address)");
            ok = false;
          }
        }
        for (size_t k = 4; k <= 5; ++k) {
          if (fields[k] == nullptr) continue;
          std::string path;
          auto text = string_value(*fields[k]);
          // "~/" (system users only) is the recipient's home, resolved at delivery.
          if (text && d.system_users && text->starts_with("~/")) {
            path = *text;
          } else if (!path_value(*fields[k], path)) {
            ok = false;
            continue;
          }
          if (!valid_mailbox_template(path, d.system_users)) {
            reporter_.at(
                fields[k]->value.mark,
                quote(fields[k]->key.text) +
                    (d.system_users ? " must start with ~/ or hold %u as a whole path segment, "
                                      "such as ~/Maildir or /var/mail/%u"
                                    : " needs %u standing for a whole path segment, such as "
                                      "/var/mail/%u"));
            ok = false;
            continue;
          }
          (k == 4 ? d.maildir : d.mbox) = std::move(path);
        }
        if (const MapEntry* e = fields[6]) {
          if (auto target = string_value(*e)) {
            if (target->starts_with("unix:/") ||
                (!target->starts_with("unix:") && inet::read_socket_address(*target))) {
              d.lmtp = std::move(*target);
            } else {
              reporter_.at(e->value.mark, "bad 'lmtp' target " + quote(*target) +
                                              " (expected unix:/path or IP:port)");
              ok = false;
            }
          } else {
            ok = false;
          }
        }
        if (const MapEntry* e = fields[7]) {
          auto command = string_value(*e);
          if (command && !command->empty() &&
              std::none_of(command->begin(), command->end(),
                           [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
            d.command = std::move(*command);
          } else {
            if (command)
              reporter_.at(e->value.mark,
                           "'command' must be a non-empty command line without control "
                           "characters");
            ok = false;
          }
        }
        if (fields[8] != nullptr && !walk_alias_rights(*fields[8], d.alias_commands)) ok = false;
        if (fields[9] != nullptr && !walk_alias_rights(*fields[9], d.alias_files)) ok = false;
        if (const MapEntry* e = fields[10]) {
          if (!d.system_users) {
            reporter_.at(e->key.mark, "'min_uid' applies to domains with 'users: system'");
            ok = false;
          } else if (auto n = number_value(*e, "", 0xfffffffe)) {
            d.min_uid = static_cast<uint32_t>(*n);
          } else {
            ok = false;
          }
        }
        if ((d.maildir ? 1 : 0) + (d.mbox ? 1 : 0) + (d.lmtp ? 1 : 0) + (d.command ? 1 : 0) > 1) {
          reporter_.at(item.mark, "a domain is delivered one way: maildir, mbox, lmtp or command");
          ok = false;
        }
        if (!ok) continue;
      }
      if (name_node->kind != Node::Kind::scalar) {
        reporter_.at(name_node->mark,
                     "each domain must be a name or a mapping with name and users");
        continue;
      }
      const Node& name = *name_node;
      std::string domain = name.text;
      std::transform(domain.begin(), domain.end(), domain.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!domain.empty() && domain.back() == '.') domain.pop_back();
      if (!valid_hostname(domain)) {
        reporter_.at(name.mark, "invalid domain " + quote(name.text) +
                                    " (expected letters, digits, '-' and '.')");
        continue;
      }
      const auto [first, fresh] = lines.emplace(domain, name.mark.line);
      if (!fresh) {
        reporter_.at(name.mark, "duplicate domain " + quote(domain) + " (first at line " +
                                    std::to_string(first->second) + ")");
        continue;
      }
      d.name = std::move(domain);
      domains.push_back(std::move(d));
    }
  }

  // Where aliases may name commands or files: a list of "aliases" and "include", [] for
  // nowhere.
  bool walk_alias_rights(const MapEntry& entry, AliasRights& rights) {
    const Node& value = entry.value;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, quote(entry.key.text) +
                                   " must be a list such as [aliases] or [aliases, include]");
      return false;
    }
    rights = AliasRights{.aliases = false, .include = false};
    bool ok = true;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::scalar && item.text == kAliasSourceNames[0]) {
        rights.aliases = true;
      } else if (item.kind == Node::Kind::scalar && item.text == kAliasSourceNames[1]) {
        rights.include = true;
      } else {
        reporter_.at(item.mark, "expected one of " + join(kAliasSourceNames) +
                                    (item.kind == Node::Kind::scalar ? ", not " + quote(item.text)
                                                                     : std::string()));
        ok = false;
      }
    }
    return ok;
  }

  // A list of local parts, "system" or the path of a virtual users table.
  bool walk_users(const MapEntry& entry, Domain& domain) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::scalar) {
      if (value.text == "system") {
        domain.system_users = true;
        return true;
      }
      std::string path;
      if (!path_value(entry, path)) return false;
      domain.users_table = std::move(path);
      return true;
    }
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'users' must be a list of local parts, 'system' or a table file");
      return false;
    }
    std::vector<std::string> users;
    bool ok = true;
    for (const Node& u : value.items) {
      if (u.kind != Node::Kind::scalar || u.text.empty() || u.text.size() > 64 ||
          u.text.find_first_of("@%! \t\"") != std::string::npos) {
        reporter_.at(u.mark, "invalid user (expected a local part such as 'alice')");
        ok = false;
        continue;
      }
      std::string name = u.text;
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      users.push_back(std::move(name));
    }
    if (ok) domain.users = std::move(users);
    return ok;
  }

  // A count or size: decimal digits, for sizes optionally followed by K, M or G (powers of
  // 1024); for durations optionally by s, m or h.
  std::optional<uint64_t> number_value(const MapEntry& entry, std::string_view suffixes,
                                       uint64_t max, uint64_t min = 1) {
    auto text = string_value(entry);
    if (!text) return std::nullopt;
    uint64_t n = 0;
    size_t i = 0;
    for (; i < text->size() && (*text)[i] >= '0' && (*text)[i] <= '9'; ++i) {
      n = n * 10 + static_cast<uint64_t>((*text)[i] - '0');
      if (n > max) break;
    }
    uint64_t scale = 1;
    if (i + 1 == text->size() && suffixes.find((*text)[i]) != std::string_view::npos) {
      switch ((*text)[i]) {
        case 'K':
          scale = uint64_t{1} << 10;
          break;
        case 'M':
          scale = uint64_t{1} << 20;
          break;
        case 'G':
          scale = uint64_t{1} << 30;
          break;
        case 'm':
          scale = 60;
          break;
        case 'h':
          scale = 3600;
          break;
        case 'd':
          scale = 86400;
          break;
        default:
          break;
      }
      ++i;
    }
    if (i == 0 || i != text->size() || n < min || n > max / scale) {
      std::string expected = "a number from " + std::to_string(min) + " to " + std::to_string(max);
      if (!suffixes.empty()) expected += " (suffixes: " + std::string(suffixes) + ")";
      reporter_.at(entry.value.mark, "bad " + quote(entry.key.text) + " value " + quote(*text) +
                                         ": expected " + expected);
      return std::nullopt;
    }
    return n * scale;
  }

  void walk_limits(const MapEntry& entry, Limits& limits) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::mapping) {
      reporter_.at(value.mark, "'limits' must be a mapping");
      return;
    }
    const auto fields = check_keys(value, "'limits'", kLimitKeys);
    auto set32 = [&](const MapEntry* e, uint32_t& out, std::string_view suffixes, uint64_t max,
                     uint64_t min = 1) {
      if (e == nullptr) return;
      if (auto n = number_value(*e, suffixes, max, min)) out = static_cast<uint32_t>(*n);
    };
    if (const MapEntry* e = fields[0])
      if (auto n = number_value(*e, "KMG", uint64_t{1} << 40)) limits.message_size = *n;
    set32(fields[1], limits.recipients, "", 1000000);
    set32(fields[2], limits.errors, "", 1000);
    set32(fields[3], limits.sessions, "", 1000000);
    set32(fields[4], limits.sessions_per_ip, "", 1000000);
    set32(fields[5], limits.command_timeout, "smh", 86400);
    set32(fields[6], limits.data_timeout, "smh", 86400);
    set32(fields[7], limits.expire, "smhd", 365 * 86400);
    set32(fields[8], limits.retry_first, "smhd", 86400);
    set32(fields[9], limits.retry_max, "smhd", 7 * 86400);
    if (limits.retry_max < limits.retry_first && fields[9] != nullptr)
      reporter_.at(fields[9]->value.mark, "'retry_max' is shorter than 'retry_first'");
    set32(fields[10], limits.delivery_timeout, "smh", 86400);
    if (limits.delivery_timeout == 0 && fields[10] != nullptr)
      reporter_.at(fields[10]->value.mark, "'delivery_timeout' must be at least 1 second");
    set32(fields[11], limits.connection_rate, "", 1000000, 0);        // 0: no limit
    set32(fields[12], limits.delay_warning, "smhd", 365 * 86400, 0);  // 0: none
  }

  // A listener with the positions the duplicate checks point at.
  struct PlacedListener {
    Listener listener;
    Mark address_mark;
    Mark name_mark;  // the address's when the name is the default
  };

  void walk_listeners(const MapEntry& entry, std::vector<Listener>& listeners) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'listeners' must be a list");
      return;
    }
    if (value.items.empty()) {
      reporter_.at(value.mark, "no listeners configured (the 'listeners' list is empty)");
      return;
    }
    std::map<std::string, int> address_lines;
    std::map<std::string, int, std::less<>> name_lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      if (item.kind != Node::Kind::mapping) {
        reporter_.at(item.mark, "listener entry must be a mapping (with address, role, name)");
        continue;
      }
      std::optional<PlacedListener> placed = walk_listener(item);
      if (!placed) continue;
      const Listener& listener = placed->listener;
      const auto [first_address, fresh_address] =
          address_lines.emplace(inet::address_key(listener.address), placed->address_mark.line);
      if (!fresh_address) {
        reporter_.at(placed->address_mark, "duplicate listener " + listener.address.to_string() +
                                               " (first defined at line " +
                                               std::to_string(first_address->second) + ")");
        continue;  // its default name would repeat the same complaint
      }
      const auto [first_name, fresh_name] =
          name_lines.emplace(listener.name, placed->name_mark.line);
      if (!fresh_name) {
        reporter_.at(placed->name_mark, "duplicate listener name " + quote(listener.name) +
                                            " (first defined at line " +
                                            std::to_string(first_name->second) + ")");
        continue;
      }
      listeners.push_back(std::move(placed->listener));
    }
  }

  std::optional<PlacedListener> walk_listener(const Node& item) {
    const auto fields = check_keys(item, "listener", kListenerKeys);
    PlacedListener placed;
    Listener& listener = placed.listener;
    bool ok = true;
    const MapEntry* address_entry = fields[0];
    if (address_entry == nullptr) {
      reporter_.at(item.mark, "listener has no 'address'");
      ok = false;
    } else if (auto text = string_value(*address_entry)) {
      auto address = inet::read_socket_address(*text);
      if (address) {
        listener.address = address.value();
      } else if (address.error() == inet::AddressProblem::port_range) {
        reporter_.at(address_entry->value.mark,
                     "bad listener address " + quote(*text) + ": port must be 1-65535");
        ok = false;
      } else {
        reporter_.at(address_entry->value.mark,
                     "bad listener address " + quote(*text) + " (expected IP:port or [IPv6]:port)");
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const MapEntry* e = fields[1]) {
      if (auto role = string_value(*e)) {
        size_t index = 0;
        while (index < kRoleNames.size() && kRoleNames[index] != *role) ++index;
        if (index < kRoleNames.size()) {
          listener.role = static_cast<ListenerRole>(index);
        } else {
          reporter_.at(e->value.mark, "unknown listener role " + quote(*role) +
                                          " (expected one of: " + join(kRoleNames) + ")");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    const MapEntry* name_entry = fields[2];
    if (name_entry != nullptr) {
      if (auto name = string_value(*name_entry)) {
        if (valid_listener_name(*name)) {
          listener.name = std::move(*name);
        } else {
          reporter_.at(name_entry->value.mark, "invalid listener name " + quote(*name) +
                                                   " (expected 1-" +
                                                   std::to_string(kMaxListenerName) +
                                                   " printable characters without spaces)");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    if (const MapEntry* e = fields[3]) {
      if (auto flag = bool_value(*e))
        listener.plaintext_auth = *flag;
      else
        ok = false;
    }
    if (const MapEntry* e = fields[4]) {
      if (auto checks = walk_checks(*e))
        listener.checks = std::move(*checks);
      else
        ok = false;
    } else if (listener.role == ListenerRole::smtp) {
      // Verifying the name costs a few lookups and makes Received worth reading; refusing on
      // it is left to the admin, since many legitimate senders lack one.
      listener.checks.fcrdns = CheckAction::tag;
    }
    if (!ok) return std::nullopt;
    placed.address_mark = address_entry->value.mark;
    if (name_entry != nullptr) {
      placed.name_mark = name_entry->value.mark;
    } else {
      listener.name =
          std::string(listener_role_name(listener.role)) + "/" + listener.address.to_string();
      placed.name_mark = placed.address_mark;
    }
    return placed;
  }

  // "what 'text'" for a list item, or only "what" when the item is not even a string.
  static std::string named(std::string_view what, const Node& item) {
    if (item.kind != Node::Kind::scalar) return std::string(what);
    return std::string(what) + " " + quote(item.text);
  }

  // Replaces the default: a list given is the whole list, and [] trusts nobody.
  void walk_trusted_networks(const MapEntry& entry, std::vector<Network>& networks) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'trusted_networks' must be a list");
      return;
    }
    std::map<std::string, int, std::less<>> lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      auto written =
          item.kind == Node::Kind::scalar
              ? inet::read_network(item.text)
              : Result<inet::WrittenNetwork, inet::NetworkProblem>(inet::NetworkProblem::syntax);
      const std::string bad = named("bad network", item);
      if (!written) {
        if (written.error() == inet::NetworkProblem::prefix_range) {
          reporter_.at(item.mark, bad + ": prefix must be 0-" +
                                      (item.text.find(':') != std::string::npos ? "128" : "32"));
        } else {
          reporter_.at(item.mark, bad +
                                      " (expected an IPv4 or IPv6 address with an optional "
                                      "/prefix, such as 192.0.2.0/24)");
        }
        continue;
      }
      const Network& network = written->network;
      if (written->host_bits) {
        reporter_.at(item.mark, bad + ": host bits set; did you mean " + network.to_string() + "?");
        continue;
      }
      const auto [first, fresh] = lines.emplace(network.to_string(), item.mark.line);
      if (!fresh) {
        reporter_.at(item.mark, "duplicate network " + network.to_string() + " (first at line " +
                                    std::to_string(first->second) + ")");
        continue;
      }
      if (networks.size() == kMaxTrustedNetworks) {
        reporter_.at(item.mark, "more than " + std::to_string(kMaxTrustedNetworks) + " networks");
        break;
      }
      networks.push_back(network);
    }
  }

  void walk_dns(const MapEntry& entry, Dns& dns) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::mapping) {
      reporter_.at(value.mark, "'dns' must be a mapping (with resolvers and timeout)");
      return;
    }
    const auto fields = check_keys(value, "'dns'", kDnsKeys);
    if (const MapEntry* e = fields[0]) walk_resolvers(*e, dns.resolvers);
    if (const MapEntry* e = fields[1]) {
      if (auto n = number_value(*e, "s", kMaxDnsTimeout)) dns.timeout = static_cast<uint32_t>(*n);
    }
  }

  void walk_resolvers(const MapEntry& entry, std::vector<std::string>& resolvers) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'resolvers' must be a list of IP addresses");
      return;
    }
    std::map<std::string, int, std::less<>> lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      auto resolver = item.kind == Node::Kind::scalar
                          ? read_resolver(item.text)
                          : Result<std::string, ResolverProblem>(ResolverProblem::syntax);
      if (!resolver) {
        const std::string bad = named("bad resolver", item);
        if (resolver.error() == ResolverProblem::port_range) {
          reporter_.at(item.mark, bad + ": port must be 1-65535");
        } else {
          reporter_.at(item.mark, bad + " (expected an IP address, optionally followed by @port)");
        }
        continue;
      }
      std::string text = std::move(resolver).value();
      // "192.0.2.1" and "192.0.2.1@53" are the same server.
      const std::string key = text.find('@') == std::string::npos ? text + "@53" : text;
      const auto [first, fresh] = lines.emplace(key, item.mark.line);
      if (!fresh) {
        reporter_.at(item.mark, "duplicate resolver " + text + " (first at line " +
                                    std::to_string(first->second) + ")");
        continue;
      }
      if (resolvers.size() == kMaxResolvers) {
        reporter_.at(item.mark, "more than " + std::to_string(kMaxResolvers) + " resolvers");
        break;
      }
      resolvers.push_back(std::move(text));
    }
  }

  std::optional<CheckAction> action_value(const MapEntry& entry) {
    auto text = string_value(entry);
    if (!text) return std::nullopt;
    for (size_t i = 0; i < kCheckActionNames.size(); ++i) {
      if (kCheckActionNames[i] == *text) return static_cast<CheckAction>(i);
    }
    reporter_.at(entry.value.mark, "bad " + quote(entry.key.text) + " value " + quote(*text) +
                                       " (expected one of: " + join(kCheckActionNames) + ")");
    return std::nullopt;
  }

  // A listener's checks. Keys left out are off, except dnsbl, which refuses once zones are
  // given: a list of zones is rarely written to be ignored.
  std::optional<ClientChecks> walk_checks(const MapEntry& entry) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return std::nullopt;
    if (value.kind != Node::Kind::mapping) {
      reporter_.at(value.mark, "'checks' must be a mapping (with fcrdns, dnsbl, threshold, zones)");
      return std::nullopt;
    }
    const auto fields = check_keys(value, "'checks'", kChecksKeys);
    ClientChecks checks;
    bool ok = true;
    if (const MapEntry* e = fields[0]) {
      if (auto action = action_value(*e))
        checks.fcrdns = *action;
      else
        ok = false;
    }
    std::optional<CheckAction> dnsbl;
    if (const MapEntry* e = fields[1]) {
      dnsbl = action_value(*e);
      ok = ok && dnsbl.has_value();
    }
    bool threshold_given = false;
    if (const MapEntry* e = fields[2]) {
      if (auto n = number_value(*e, "", kMaxWeight)) {
        checks.threshold = static_cast<uint32_t>(*n);
        threshold_given = true;
      } else {
        ok = false;
      }
    }
    const bool zones_ok = fields[3] == nullptr || walk_zones(*fields[3], checks.zones);
    ok = ok && zones_ok;
    if (fields[3] == nullptr && dnsbl && *dnsbl != CheckAction::off) {
      reporter_.at(fields[1]->value.mark,
                   "'dnsbl: " + std::string(kCheckActionNames[static_cast<size_t>(*dnsbl)]) +
                       "' needs a list of 'zones' to ask");
      ok = false;
    }
    checks.dnsbl = dnsbl.value_or(checks.zones.empty() ? CheckAction::off : CheckAction::refuse);
    // Only once every zone is known: a broken one must not make the threshold look too high.
    if (threshold_given && zones_ok) {
      uint64_t total = 0;
      for (const DnsblZone& zone : checks.zones) total += zone.weight;
      if (checks.threshold > total) {
        reporter_.at(fields[2]->value.mark,
                     "'threshold' " + std::to_string(checks.threshold) +
                         " can never be reached (the weights of the zones add up to " +
                         std::to_string(total) + ")");
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return checks;
  }

  // "zen.spamhaus.org" or {zone: zen.spamhaus.org, codes: [127.0.0.2], weight: 2}; false when
  // any entry is broken.
  bool walk_zones(const MapEntry& entry, std::vector<DnsblZone>& zones) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return false;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'zones' must be a list of DNSBL zones");
      return false;
    }
    if (value.items.empty()) {
      reporter_.at(value.mark, "'zones' is empty (leave it out when no DNSBL is asked)");
      return false;
    }
    std::map<std::string, int, std::less<>> lines;
    bool all_ok = true;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) {
        all_ok = false;
        continue;
      }
      const Node* name_node = &item;
      DnsblZone zone;
      if (item.kind == Node::Kind::mapping) {
        const auto fields = check_keys(item, "zone entry", kZoneKeys);
        bool ok = true;
        if (fields[0] == nullptr) {
          reporter_.at(item.mark, "zone entry has no 'zone'");
          ok = false;
        } else {
          name_node = &fields[0]->value;
        }
        if (fields[1] != nullptr && !walk_codes(*fields[1], zone.codes)) ok = false;
        if (const MapEntry* e = fields[2]) {
          if (auto n = number_value(*e, "", kMaxWeight))
            zone.weight = static_cast<uint32_t>(*n);
          else
            ok = false;
        }
        if (!ok) {
          all_ok = false;
          continue;
        }
      }
      if (name_node->kind != Node::Kind::scalar) {
        if (name_node->kind != Node::Kind::invalid)
          reporter_.at(name_node->mark,
                       "each zone must be a name or a mapping with zone, codes and weight");
        all_ok = false;
        continue;
      }
      std::string name = name_node->text;
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (!valid_zone_name(name)) {
        reporter_.at(name_node->mark, "invalid DNSBL zone " + quote(name_node->text) +
                                          " (expected labels of 1-63 letters, digits, '-' or "
                                          "'_', at most " +
                                          std::to_string(kMaxZoneName) + " characters)");
        all_ok = false;
        continue;
      }
      const auto [first, fresh] = lines.emplace(name, name_node->mark.line);
      if (!fresh) {
        reporter_.at(name_node->mark, "duplicate zone " + quote(name) + " (first at line " +
                                          std::to_string(first->second) + ")");
        all_ok = false;
        continue;
      }
      if (zones.size() == kMaxDnsblZones) {
        reporter_.at(name_node->mark, "more than " + std::to_string(kMaxDnsblZones) + " zones");
        all_ok = false;
        break;
      }
      zone.zone = std::move(name);
      zones.push_back(std::move(zone));
    }
    return all_ok;
  }

  // The A records that count as a listing. Blocklists answer inside 127.0.0.0/8 (RFC 5782
  // 2.3); anything else is an error page or a wildcard, never a listing.
  bool walk_codes(const MapEntry& entry, std::vector<std::string>& codes) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return false;
    if (value.kind != Node::Kind::sequence) {
      reporter_.at(value.mark, "'codes' must be a list of addresses in 127.0.0.0/8");
      return false;
    }
    if (value.items.empty()) {
      // [] reads as "nothing counts", which would silently ask the zone for nothing.
      reporter_.at(value.mark,
                   "'codes' is empty (leave it out to count any address in "
                   "127.0.0.0/8)");
      return false;
    }
    std::map<std::string, int, std::less<>> lines;
    bool ok = true;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) {
        ok = false;
        continue;
      }
      std::optional<sockaddr_storage> address;
      if (item.kind == Node::Kind::scalar) address = inet::parse_ip_address(item.text);
      if (!address || address->ss_family != AF_INET || inet::address_bytes(*address)[0] != 127) {
        reporter_.at(item.mark,
                     named("bad code", item) + " (expected an IPv4 address in 127.0.0.0/8)");
        ok = false;
        continue;
      }
      std::string code = inet::address_text(*address, inet::Mapped::as_ipv6);
      const auto [first, fresh] = lines.emplace(code, item.mark.line);
      if (!fresh) {
        reporter_.at(item.mark, "duplicate code " + code + " (first at line " +
                                    std::to_string(first->second) + ")");
        ok = false;
        continue;
      }
      if (codes.size() == kMaxDnsblCodes) {
        reporter_.at(item.mark, "more than " + std::to_string(kMaxDnsblCodes) + " codes");
        ok = false;
        break;
      }
      codes.push_back(std::move(code));
    }
    return ok;
  }

  const std::string& file_;
  const std::string base_dir_;  // absolute, or empty when it could not be made so
  Reporter& reporter_;
};

// parse_config's base_dir may be relative (a test, "smtpd -f etc/smtpd.yaml"); stored paths
// must not be, since the daemon changes directory and chroots.
std::string absolute_dir(const std::string& base_dir) {
  if (!base_dir.empty() && base_dir.front() == '/') return base_dir;
  std::unique_ptr<char, decltype(&std::free)> cwd(getcwd(nullptr, 0), &std::free);
  if (!cwd) return {};
  std::string out = cwd.get();
  if (!base_dir.empty() && base_dir != ".") {
    if (out.back() != '/') out += '/';
    out += base_dir;
  }
  return out;
}

}  // namespace

std::string_view listener_role_name(ListenerRole role) {
  const auto index = static_cast<size_t>(role);
  return index < kRoleNames.size() ? kRoleNames[index] : "unknown";
}

std::string ConfigError::to_string() const {
  if (line == 0) return file + ": " + message;
  std::string out = file + ":" + std::to_string(line);
  if (column > 0) out += ":" + std::to_string(column);
  return out + ": " + message;
}

Result<Config, ConfigErrors> parse_config(std::string_view text, const std::string& file,
                                          const std::string& base_dir) {
  Reporter reporter(file);
  if (text.size() > kMaxFileSize) {
    reporter.whole_file("file too large (more than 1 MiB)");
    return reporter.take();
  }
  std::optional<Node> root = TreeBuilder(text, reporter).build();
  if (!root) return reporter.take();
  Config config = Walker(file, absolute_dir(base_dir), reporter).walk(*root);
  if (!reporter.empty()) return reporter.take();
  return config;
}

Result<Config, ConfigErrors> load_config(const std::string& path) {
  auto fail = [&path](std::string message) {
    return ConfigErrors{ConfigError{path, 0, 0, std::move(message)}};
  };
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return fail("cannot open: " + errno_text(errno));
  std::string text;
  // Read one byte past the limit so that "too large" never depends on what stat claims.
  char buffer[16384];
  while (text.size() <= kMaxFileSize) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot read: " + errno_text(errno));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  if (text.size() > kMaxFileSize) return fail("file too large (more than 1 MiB)");

  std::unique_ptr<char, decltype(&std::free)> real(realpath(path.c_str(), nullptr), &std::free);
  if (!real) return fail("cannot resolve path: " + errno_text(errno));
  std::string base_dir = real.get();
  const size_t slash = base_dir.rfind('/');
  base_dir.resize(slash == 0 || slash == std::string::npos ? 1 : slash);
  return parse_config(text, path, base_dir);
}

}  // namespace postern::config
