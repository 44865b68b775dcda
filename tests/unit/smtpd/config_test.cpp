// Tests for smtpd/config.cpp and the generic walk under it (common/config): the schema, every error
// with its exact position, load_config on real files, and the golden files in tests/data/config
// (each NAME.yaml with NAME.expected: the dumped Config for valid-*, the error lines for bad-*).
#include "smtpd/config.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef POSTERN_TEST_DATA_DIR
#error "POSTERN_TEST_DATA_DIR must name tests/data"
#endif

namespace postern::smtpd {
namespace {

using inet::Network;
using lookup::AliasRights;
using lookup::CheckAction;
using lookup::ClientChecks;
using lookup::Dns;
using lookup::DnsblZone;
using lookup::Domain;

namespace fs = std::filesystem;

constexpr char kBase[] = "/etc/postern";

Result<Config, ConfigErrors> parse(std::string_view text) {
  return parse_config(text, "t.yaml", kBase);
}

// The errors of a text that must fail, as "file:line:column: message" lines.
std::vector<std::string> errors_of(std::string_view text) {
  auto result = parse(text);
  EXPECT_FALSE(result.ok()) << "expected errors for:\n" << text;
  std::vector<std::string> lines;
  if (result.ok()) return lines;
  for (const ConfigError& error : result.error()) lines.push_back(error.to_string());
  return lines;
}

// The single error of a text that must fail with exactly one.
std::string error_of(std::string_view text) {
  const auto lines = errors_of(text);
  EXPECT_EQ(lines.size(), 1u) << ::testing::PrintToString(lines);
  return lines.empty() ? std::string() : lines[0];
}

std::string machine_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

const char* action_name(CheckAction action) {
  switch (action) {
    case CheckAction::off:
      return "off";
    case CheckAction::tag:
      return "tag";
    case CheckAction::refuse:
      return "refuse";
  }
  return "?";
}

// What a listener of this role checks when its entry has no 'checks'.
ClientChecks default_checks(ListenerRole role) {
  ClientChecks checks;
  if (role == ListenerRole::smtp) checks.fcrdns = CheckAction::tag;
  return checks;
}

std::vector<Network> loopback_networks() {
  return {*inet::parse_network("127.0.0.0/8"), *inet::parse_network("::1/128")};
}

// A Config as text, for comparison with the golden *.expected files. Client checks, trusted
// networks, relaying, senders and DNS appear only when they differ from their defaults.
std::string dump(const Config& config) {
  std::ostringstream out;
  out << "hostname: "
      << (config.smtp.hostname == machine_hostname() ? "<gethostname>" : config.smtp.hostname)
      << "\n"
      << "user: " << config.user << "\n"
      << "queue_user: " << config.queue_user << "\n"
      << "spool: " << config.spool_dir << "\n"
      << "empty_dir: " << config.empty_dir << "\n"
      << "control.socket: " << config.control.socket_path << "\n"
      << "control.group: " << config.control.group.value_or("<none>") << "\n";
  for (const Listener& listener : config.listeners) {
    out << "listener: " << listener.name << " " << listener_role_name(listener.role) << " "
        << listener.address.to_string() << "\n";
    const ClientChecks& checks = listener.checks;
    if (checks == default_checks(listener.role)) continue;
    out << "  checks: fcrdns=" << action_name(checks.fcrdns)
        << " dnsbl=" << action_name(checks.dnsbl) << " threshold=" << checks.threshold << "\n";
    for (const DnsblZone& zone : checks.zones) {
      out << "  zone: " << zone.zone << " weight=" << zone.weight;
      for (size_t i = 0; i < zone.codes.size(); ++i)
        out << (i == 0 ? " codes=" : ",") << zone.codes[i];
      out << "\n";
    }
  }
  if (config.lookup.trusted_networks != loopback_networks()) {
    out << "trusted_networks:";
    if (config.lookup.trusted_networks.empty()) out << " <none>";
    for (const Network& network : config.lookup.trusted_networks) out << " " << network.to_string();
    out << "\n";
  }
  if (!config.lookup.relay_domains.empty()) {
    out << "relay_domains:";
    for (const std::string& domain : config.lookup.relay_domains) out << " " << domain;
    out << "\n";
  }
  if (config.lookup.trusted_networks_relay) out << "trusted_networks_relay: true\n";
  if (config.lookup.senders) out << "senders: " << *config.lookup.senders << "\n";
  if (config.lookup.sender_rule == lookup::SenderRule::off) out << "senders: off\n";
  if (config.lookup.dns != Dns{}) {
    out << "dns: timeout=" << config.lookup.dns.timeout << " resolvers=";
    if (config.lookup.dns.resolvers.empty()) out << "<resolv.conf>";
    for (size_t i = 0; i < config.lookup.dns.resolvers.size(); ++i)
      out << (i == 0 ? "" : ",") << config.lookup.dns.resolvers[i];
    out << "\n";
  }
  for (const Domain& domain : config.lookup.domains) {
    out << "domain: " << domain.name;
    if (domain.users)
      for (const std::string& user : *domain.users) out << " " << user;
    if (domain.system_users) out << " users=system min_uid=" << domain.min_uid;
    if (domain.users_table) out << " users_table=" << *domain.users_table;
    if (domain.aliases) out << " aliases=" << *domain.aliases;
    if (domain.catch_all) out << " catch_all=" << *domain.catch_all;
    if (domain.recipient_delimiter != lookup::kDefaultRecipientDelimiter)
      out << " recipient_delimiter='" << domain.recipient_delimiter << "'";
    for (const auto& [key, rights] : {std::pair{" alias_commands=", domain.alias_commands},
                                      std::pair{" alias_files=", domain.alias_files}})
      if (rights != AliasRights{})
        out << key
            << (rights.aliases ? (rights.include ? "aliases,include" : "aliases")
                               : (rights.include ? "include" : "<none>"));
    if (domain.maildir) out << " maildir=" << *domain.maildir;
    if (domain.mbox) out << " mbox=" << *domain.mbox;
    if (domain.lmtp) out << " lmtp=" << *domain.lmtp;
    if (domain.command) out << " command=" << *domain.command;
    out << "\n";
  }
  if (config.tls) out << "tls: " << config.tls->certificate << " " << config.tls->key << "\n";
  if (config.log != postern::log::Output{})
    out << "log: to="
        << (config.log.target ? postern::log::kTargetNames[static_cast<size_t>(*config.log.target)]
                              : "<default>")
        << " format=" << postern::log::kFormatNames[static_cast<size_t>(config.log.format)]
        << " file=" << config.log.file << " syslog_socket=" << config.log.syslog_socket << "\n";
  const smtp::Limits& l = config.smtp.limits;
  out << "limits: message_size=" << l.message_size << " recipients=" << l.recipients
      << " errors=" << l.errors << " sessions=" << l.sessions
      << " sessions_per_ip=" << l.sessions_per_ip << " command_timeout=" << l.command_timeout
      << " data_timeout=" << l.data_timeout << " connection_rate=" << config.lookup.connection_rate
      << "\n";
  if (config.virtual_user) out << "virtual_user: " << *config.virtual_user << "\n";
  if (config.metrics) out << "metrics: " << config.metrics->listen << "\n";
  return out.str();
}

// A fresh directory under TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "postern-config-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// --- valid configurations ---

TEST(ParseConfig, FullConfigSetsEveryField) {
  const auto result = parse(R"(hostname: mail.example.org
user: smtpd
queue_user: 'smtpq'
spool: /srv/spool
empty_dir: "/srv/empty"
control:
  socket: /run/p.sock
  group: mailadm
listeners:
  - address: 127.0.0.1:25
    role: smtp
    name: mx
  - address: "[::1]:587"
    role: submission
    name: sub
  - {address: 192.0.2.1:465, role: smtps, name: tls}
tls:
  certificate: certs/fullchain.pem
  key: /etc/ssl/private/key.pem
)");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const Config& config = result.value();
  ASSERT_TRUE(config.tls.has_value());
  EXPECT_EQ(config.tls->certificate, std::string(kBase) + "/certs/fullchain.pem");
  EXPECT_EQ(config.tls->key, "/etc/ssl/private/key.pem");
  EXPECT_EQ(config.file, "t.yaml");
  EXPECT_EQ(config.smtp.hostname, "mail.example.org");
  EXPECT_EQ(config.user, "smtpd");
  EXPECT_EQ(config.queue_user, "smtpq");
  EXPECT_EQ(config.spool_dir, "/srv/spool");
  EXPECT_EQ(config.empty_dir, "/srv/empty");
  EXPECT_EQ(config.control.socket_path, "/run/p.sock");
  EXPECT_EQ(config.control.group, "mailadm");
  ASSERT_EQ(config.listeners.size(), 3u);
  EXPECT_EQ(config.listeners[0].name, "mx");
  EXPECT_EQ(config.listeners[0].role, ListenerRole::smtp);
  EXPECT_EQ(config.listeners[0].address.to_string(), "127.0.0.1:25");
  EXPECT_EQ(config.listeners[1].name, "sub");
  EXPECT_EQ(config.listeners[1].role, ListenerRole::submission);
  EXPECT_EQ(config.listeners[1].address.to_string(), "[::1]:587");
  EXPECT_EQ(config.listeners[1].address.family(), AF_INET6);
  EXPECT_EQ(config.listeners[2].name, "tls");
  EXPECT_EQ(config.listeners[2].role, ListenerRole::smtps);
  EXPECT_EQ(config.listeners[2].address.to_string(), "192.0.2.1:465");
}

TEST(ParseConfig, DefaultsWhenAbsent) {
  const auto result = parse("listeners:\n  - address: 127.0.0.1:25\n");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const Config& config = result.value();
  EXPECT_EQ(config.smtp.hostname, machine_hostname());
  EXPECT_EQ(config.user, "_smtpd");
  EXPECT_EQ(config.queue_user, "_smtpq");
  EXPECT_EQ(config.spool_dir, "/var/spool/postern");
  EXPECT_EQ(config.empty_dir, "/var/empty");
  EXPECT_EQ(config.control.socket_path, "/run/postern/smtpd.sock");
  EXPECT_FALSE(config.control.group.has_value());
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].role, ListenerRole::smtp);
}

// (Days were once read as seconds: "expire: 4d" expired mail after 4 seconds.)
TEST(ParseConfig, DurationsTakeDays) {
  const auto parsed = parse(
      "limits: {expire: 2d, retry_first: 1d, retry_max: 3d}\n"
      "listeners:\n  - address: 127.0.0.1:25\n");
  ASSERT_TRUE(parsed.ok()) << parsed.error()[0].to_string();
  EXPECT_EQ(parsed.value().queue.expire, 2u * 86400);
  EXPECT_EQ(parsed.value().queue.retry_first, 86400u);
  EXPECT_EQ(parsed.value().queue.retry_max, 3u * 86400);
}

TEST(ParseConfig, DelayWarningTakesDaysAndZero) {
  const auto minimal = parse("listeners:\n  - address: 127.0.0.1:25\n");
  ASSERT_TRUE(minimal.ok());
  EXPECT_EQ(minimal.value().queue.delay_warning, 4u * 3600);
  for (auto [text, seconds] : {std::pair{"0", 0u}, {"90m", 5400u}, {"2d", 172800u}}) {
    const auto parsed = parse(std::string("limits: {delay_warning: ") + text +
                              "}\nlisteners:\n  - address: 127.0.0.1:25\n");
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.error()[0].to_string();
    EXPECT_EQ(parsed.value().queue.delay_warning, seconds) << text;
  }
  EXPECT_FALSE(parse("limits: {delay_warning: 2y}\nlisteners:\n  - address: 127.0.0.1:25\n").ok());
}

TEST(ParseConfig, ConnectionRateZeroTurnsTheLimitOff) {
  const auto off = parse("limits: {connection_rate: 0}\nlisteners:\n  - address: 127.0.0.1:25\n");
  ASSERT_TRUE(off.ok()) << off.error()[0].to_string();
  EXPECT_EQ(off.value().lookup.connection_rate, 0u);
  // Elsewhere 0 is no limit at all and stays refused.
  const auto bad = parse("limits: {sessions: 0}\nlisteners:\n  - address: 127.0.0.1:25\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error()[0].to_string().find("expected a number from 1 to 1000000"),
            std::string::npos)
      << bad.error()[0].to_string();
}

TEST(ParseConfig, ControlWithoutGroupKeepsDefaultGroup) {
  const auto result = parse("control:\n  socket: /x.sock\nlisteners:\n  - address: 1.2.3.4:25\n");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->control.socket_path, "/x.sock");
  EXPECT_FALSE(result->control.group.has_value());
}

TEST(ParseConfig, DefaultListenerNameIsRoleAndAddress) {
  const auto result = parse(R"(listeners:
  - address: 127.0.0.1:25
  - address: "[2001:db8::1]:587"
    role: submission
  - address: 0.0.0.0:465
    role: smtps
tls: {certificate: c.pem, key: k.pem}
)");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  ASSERT_EQ(result->listeners.size(), 3u);
  EXPECT_EQ(result->listeners[0].name, "smtp/127.0.0.1:25");
  EXPECT_EQ(result->listeners[1].name, "submission/[2001:db8::1]:587");
  EXPECT_EQ(result->listeners[2].name, "smtps/0.0.0.0:465");
}

TEST(ParseConfig, RelativePathsResolveAgainstBaseDir) {
  const std::string text = R"(spool: spool
empty_dir: ../empty
control:
  socket: run/smtpd.sock
listeners:
  - address: 127.0.0.1:25
)";
  for (const std::string base : {"/etc/postern", "/etc/postern/"}) {
    const auto result = parse_config(text, "t.yaml", base);
    ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
    EXPECT_EQ(result->spool_dir, "/etc/postern/spool");
    EXPECT_EQ(result->empty_dir, "/etc/postern/../empty");
    EXPECT_EQ(result->control.socket_path, "/etc/postern/run/smtpd.sock");
  }
}

TEST(ParseConfig, RelativeBaseDirIsMadeAbsolute) {
  const auto result =
      parse_config("spool: q\nlisteners:\n  - address: 127.0.0.1:25\n", "t.yaml", "etc");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->spool_dir, fs::current_path().string() + "/etc/q");
}

TEST(ParseConfig, AcceptsFlowStyleAndComments) {
  const auto result =
      parse("# comment\n{hostname: a.b, listeners: [{address: '127.0.0.1:25'}]}  # trailing\n");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  EXPECT_EQ(result->smtp.hostname, "a.b");
}

TEST(ParseConfig, AcceptsExplicitDocumentMarkers) {
  EXPECT_TRUE(parse("---\nlisteners:\n  - address: 127.0.0.1:25\n...\n").ok());
}

TEST(ParseConfig, HostnameValidation) {
  const std::string tail = "\nlisteners:\n  - address: 127.0.0.1:25\n";
  for (const std::string& good :
       std::vector<std::string>{"mail", "mail.example.org", "MX-1.example.org", "a1", "0.example",
                                std::string(63, 'a') + ".org"}) {
    const auto result = parse("hostname: " + good + tail);
    EXPECT_TRUE(result.ok()) << good;
    if (result.ok()) {
      EXPECT_EQ(result->smtp.hostname, good);
    }
  }
  for (const std::string& bad : std::vector<std::string>{
           "mail_host", "'a b'", "-mail.org", "mail-.org", "mail..org", "mail.org.", ".mail", "''",
           "'m\\u00e9l.org'", std::string(64, 'a') + ".org",
           "a" + std::string(126, '.') /* shorter than 254 but empty labels */,
           std::string(254, 'a')}) {
    const auto lines = errors_of("hostname: " + bad + tail);
    ASSERT_EQ(lines.size(), 1u) << bad;
    EXPECT_TRUE(lines[0].starts_with("t.yaml:1:11: invalid hostname '")) << lines[0];
    EXPECT_NE(lines[0].find("(expected letters, digits, '-' and '.', 1-253 characters)"),
              std::string::npos);
  }
  // 253 characters in 63-character labels is the most a name may have.
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(61, 'd');
  ASSERT_EQ(longest.size(), 253u);
  EXPECT_TRUE(parse("hostname: " + longest + tail).ok());
}

TEST(ParseConfig, AccountNamesAllowPunctuationButNotColonOrSpace) {
  const auto result =
      parse("user: _smtpd-1.x\ncontrol: {group: mail$}\nlisteners: [{address: '1.2.3.4:25'}]\n");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->user, "_smtpd-1.x");
  EXPECT_EQ(result->control.group, "mail$");
}

// --- errors, one kind at a time, at their exact position ---

TEST(ConfigErrors, YamlSyntaxErrorUsesProblemMark) {
  EXPECT_EQ(error_of("listeners:\n  - address: 127.0.0.1:25\n role: smtp\n"),
            "t.yaml:3:2: YAML syntax error: did not find expected key");
  EXPECT_EQ(error_of("a: b: c\n"),
            "t.yaml:1:5: YAML syntax error: mapping values are not allowed in this context");
  EXPECT_EQ(error_of("listeners: [{address: 127.0.0.1:25}\n"),
            "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']'");
}

TEST(ConfigErrors, InvalidUtf8IsReportedWhereItIs) {
  EXPECT_EQ(error_of("listeners:\n  - name: \"x\xff\"\n"),
            "t.yaml:2:13: bad encoding: invalid leading UTF-8 octet");
}

TEST(ConfigErrors, ControlCharactersInInputAreRefused) {
  const std::string text("user: a\0b\n", 10);
  const std::string line = error_of(text);
  EXPECT_TRUE(line.starts_with("t.yaml:1:8: bad encoding: ")) << line;
}

TEST(ConfigErrors, LogToAFileNeedsTheFile) {
  EXPECT_EQ(error_of("log:\n  to: file\nlisteners:\n  - address: 127.0.0.1:25\n"),
            "t.yaml:2:7: 'log.to' is file, which needs 'log.file'");
  EXPECT_EQ(error_of("log:\n  format: yaml\nlisteners:\n  - address: 127.0.0.1:25\n"),
            "t.yaml:2:11: bad 'format' value 'yaml' (expected one of: text, json)");
}

TEST(ConfigErrors, UnknownTopLevelKeyPointsAtTheKey) {
  EXPECT_EQ(error_of("listeners:\n  - address: 127.0.0.1:25\nspol: /var/spool\n"),
            "t.yaml:3:1: unknown key 'spol' in top level (expected one of: control, "
            "credentials, dns, domains, empty_dir, hostname, limits, listeners, log, metrics, "
            "queue_user, "
            "relay_domains, relay_source, relay_timeouts, relay_tls, reply_rules, routes, run_dir, "
            "senders, "
            "shaping, spool, tls, "
            "trusted_networks, "
            "trusted_networks_relay, user, virtual_user)");
}

TEST(ConfigErrors, UnknownControlKey) {
  EXPECT_EQ(error_of("control:\n  socket: /s\n  mode: 0660\nlisteners: [{address: 1.2.3.4:25}]\n"),
            "t.yaml:3:3: unknown key 'mode' in 'control' (expected one of: group, public, socket)");
}

TEST(ConfigErrors, UnknownListenerKey) {
  EXPECT_EQ(error_of("listeners:\n  - address: 127.0.0.1:25\n    tls: yes\n"),
            "t.yaml:3:5: unknown key 'tls' in listener (expected one of: address, role, name, "
            "plaintext_auth, checks)");
}

TEST(ConfigErrors, UnknownKeyWithControlCharactersIsEscaped) {
  const std::string line = error_of("\"a\\tb\\e\": 1\nlisteners: [{address: 1.2.3.4:25}]\n");
  EXPECT_TRUE(line.starts_with("t.yaml:1:1: unknown key 'a\\tb\\x1b' in top level")) << line;
}

TEST(ConfigErrors, C1ControlCharactersAreEscapedToo) {
  // "\x9b" is CSI, which some terminals honour in its one-character form.
  const std::string line = error_of("\"\\x9b31m\\u00e9\": 1\nlisteners: [{address: 1.2.3.4:25}]\n");
  EXPECT_TRUE(line.starts_with("t.yaml:1:1: unknown key '\\xc2\\x9b31m\u00e9' in top level"))
      << line;
}

TEST(ConfigErrors, TruncationKeepsUtf8Whole) {
  // 63 ASCII bytes and a two-byte character straddling the 64-byte limit.
  const std::string line =
      error_of(std::string(63, 'k') + "\u00e9: 1\nlisteners: [{address: 1.2.3.4:25}]\n");
  EXPECT_TRUE(line.starts_with("t.yaml:1:1: unknown key '" + std::string(63, 'k') + "...'"))
      << line;
}

TEST(ConfigErrors, LongOffendingTextIsTruncated) {
  const std::string line =
      error_of("hostname: " + std::string(300, 'x') + "_\nlisteners: [{address: 1.2.3.4:25}]\n");
  EXPECT_NE(line.find("'" + std::string(64, 'x') + "...'"), std::string::npos) << line;
}

TEST(ConfigErrors, DuplicateKeyPointsAtTheSecond) {
  EXPECT_EQ(error_of("spool: /a\nlisteners: [{address: 1.2.3.4:25}]\nspool: /b\n"),
            "t.yaml:3:1: duplicate key 'spool' (first at line 1)");
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:25\n    role: smtp\n    role: smtps\n"),
            "t.yaml:4:5: duplicate key 'role' (first at line 3)");
  EXPECT_EQ(error_of("control:\n  group: a\n  group: b\nlisteners: [{address: 1.2.3.4:25}]\n"),
            "t.yaml:3:3: duplicate key 'group' (first at line 2)");
}

TEST(ConfigErrors, MinUidBelongsToSystemUsers) {
  const std::string tail = "listeners: [{address: 1.2.3.4:25}]\n";
  EXPECT_EQ(error_of("domains: [{name: a.example, users: [x], min_uid: 500}]\n" + tail),
            "t.yaml:1:41: 'min_uid' applies to domains with 'users: system'");
  EXPECT_EQ(error_of("domains: [{name: a.example, users: system, min_uid: lots}]\n" + tail),
            "t.yaml:1:53: bad 'min_uid' value 'lots': expected a number from 1 to 4294967294");
}

TEST(ConfigErrors, DuplicateKeyKeepsTheFirstValue) {
  // The second value is not looked at, so only the duplicate is reported.
  EXPECT_EQ(error_of("user: a\nuser: [b]\nlisteners: [{address: 1.2.3.4:25}]\n"),
            "t.yaml:2:1: duplicate key 'user' (first at line 1)");
}

TEST(ConfigErrors, WrongTypes) {
  const std::string tail = "listeners: [{address: 1.2.3.4:25}]\n";
  EXPECT_EQ(error_of("listeners:\n  address: 127.0.0.1:25\n"),
            "t.yaml:2:3: 'listeners' must be a list");
  EXPECT_EQ(error_of("listeners: 127.0.0.1:25\n"), "t.yaml:1:12: 'listeners' must be a list");
  EXPECT_EQ(error_of("spool: [/a, /b]\n" + tail), "t.yaml:1:8: 'spool' must be a string");
  EXPECT_EQ(error_of("empty_dir: {a: b}\n" + tail), "t.yaml:1:12: 'empty_dir' must be a string");
  EXPECT_EQ(error_of("hostname: [a]\n" + tail), "t.yaml:1:11: 'hostname' must be a string");
  EXPECT_EQ(error_of("user: [a]\n" + tail), "t.yaml:1:7: 'user' must be a string");
  EXPECT_EQ(error_of("queue_user: {}\n" + tail), "t.yaml:1:13: 'queue_user' must be a string");
  EXPECT_EQ(error_of("control: /run/s.sock\n" + tail),
            "t.yaml:1:10: 'control' must be a mapping (with socket, group and public)");
  EXPECT_EQ(error_of("control:\n  socket: [a]\n" + tail), "t.yaml:2:11: 'socket' must be a string");
  EXPECT_EQ(error_of("control:\n  group: [a]\n" + tail), "t.yaml:2:10: 'group' must be a string");
  EXPECT_EQ(error_of("listeners:\n  - 127.0.0.1:25\n"),
            "t.yaml:2:5: listener entry must be a mapping (with address, role, name)");
  EXPECT_EQ(error_of("listeners:\n  - address: [127.0.0.1:25]\n"),
            "t.yaml:2:14: 'address' must be a string");
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:25\n    role: [smtp]\n"),
            "t.yaml:3:11: 'role' must be a string");
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:25\n    name: {a: b}\n"),
            "t.yaml:3:11: 'name' must be a string");
  EXPECT_EQ(error_of("[a]: b\n" + tail), "t.yaml:1:1: keys in top level must be strings");
}

TEST(ConfigErrors, EmptyValues) {
  const std::string tail = "listeners: [{address: 1.2.3.4:25}]\n";
  EXPECT_EQ(error_of("spool:\n" + tail), "t.yaml:1:7: 'spool' must not be empty (expected a path)");
  EXPECT_EQ(error_of("control:\n  socket: ''\n" + tail),
            "t.yaml:2:11: 'socket' must not be empty (expected a path)");
  EXPECT_EQ(error_of("control:\n" + tail),
            "t.yaml:1:9: 'control' must be a mapping (with socket, group and public)");
  EXPECT_EQ(error_of("user:\n" + tail),
            "t.yaml:1:6: invalid 'user' value '' (expected a non-empty name without ':' or "
            "whitespace)");
}

TEST(ConfigErrors, BadAccountNames) {
  const std::string tail = "listeners: [{address: 1.2.3.4:25}]\n";
  EXPECT_EQ(error_of("user: 'a b'\n" + tail),
            "t.yaml:1:7: invalid 'user' value 'a b' (expected a non-empty name without ':' or "
            "whitespace)");
  EXPECT_EQ(error_of("queue_user: a:b\n" + tail),
            "t.yaml:1:13: invalid 'queue_user' value 'a:b' (expected a non-empty name without "
            "':' or whitespace)");
  EXPECT_EQ(error_of("control: {group: \"a\\tb\"}\n" + tail),
            "t.yaml:1:18: invalid 'group' value 'a\\tb' (expected a non-empty name without "
            "':' or whitespace)");
}

TEST(ConfigErrors, NulInsideAQuotedValueIsRefused) {
  EXPECT_EQ(error_of("spool: \"/var/spool\\0/etc\"\nlisteners: [{address: 1.2.3.4:25}]\n"),
            "t.yaml:1:8: 'spool' must not contain NUL characters");
  EXPECT_EQ(error_of("listeners: [{address: \"1.2.3.4\\0:25\"}]\n"),
            "t.yaml:1:23: 'address' must not contain NUL characters");
}

TEST(ConfigErrors, ControlSocketPathTooLong) {
  const std::string fits = "/" + std::string(106, 's');
  EXPECT_TRUE(parse("control: {socket: " + fits + "}\nlisteners: [{address: 1.2.3.4:25}]\n").ok());
  const std::string line =
      error_of("control:\n  socket: " + fits + "s\nlisteners: [{address: 1.2.3.4:25}]\n");
  EXPECT_TRUE(line.starts_with("t.yaml:2:11: control socket path is too long (108 bytes")) << line;
  // The limit applies once the path is resolved against the base directory.
  const auto lines = errors_of("control: {socket: " + std::string(100, 's') +
                               "}\nlisteners: [{address: 1.2.3.4:25}]\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0].starts_with("t.yaml:1:19: control socket path is too long (113 bytes"))
      << lines[0];
}

TEST(ConfigErrors, BadListenerAddress) {
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4\n"),
            "t.yaml:2:14: bad listener address '1.2.3.4' (expected IP:port or [IPv6]:port)");
  EXPECT_EQ(error_of("listeners:\n  - address: localhost:25\n"),
            "t.yaml:2:14: bad listener address 'localhost:25' (expected IP:port or "
            "[IPv6]:port)");
  EXPECT_EQ(error_of("listeners:\n  - address: '::1:25'\n"),
            "t.yaml:2:14: bad listener address '::1:25' (expected IP:port or [IPv6]:port)");
}

TEST(ConfigErrors, ListenerPortOutOfRange) {
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:0\n"),
            "t.yaml:2:14: bad listener address '1.2.3.4:0': port must be 1-65535");
  EXPECT_EQ(error_of("listeners:\n  - address: \"[::1]:65536\"\n"),
            "t.yaml:2:14: bad listener address '[::1]:65536': port must be 1-65535");
}

TEST(ConfigErrors, UnknownListenerRole) {
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:25\n    role: smpt\n"),
            "t.yaml:3:11: unknown listener role 'smpt' (expected one of: smtp, submission, "
            "smtps)");
  // Roles are case-sensitive, as keys are.
  EXPECT_EQ(error_of("listeners:\n  - {address: 1.2.3.4:25, role: SMTP}\n").substr(0, 47),
            "t.yaml:2:33: unknown listener role 'SMTP' (expe");
}

TEST(ConfigErrors, BadListenerName) {
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:25\n    name: 'a b'\n"),
            "t.yaml:3:11: invalid listener name 'a b' (expected 1-64 printable characters "
            "without spaces)");
  EXPECT_TRUE(error_of("listeners:\n  - address: 1.2.3.4:25\n    name: ''\n")
                  .starts_with("t.yaml:3:11: invalid listener name '' (expected"));
  EXPECT_TRUE(
      error_of("listeners:\n  - address: 1.2.3.4:25\n    name: " + std::string(65, 'n') + "\n")
          .starts_with("t.yaml:3:11: invalid listener name 'nnn"));
  EXPECT_TRUE(
      parse("listeners:\n  - address: 1.2.3.4:25\n    name: " + std::string(64, 'n') + "\n").ok());
}

TEST(ConfigErrors, ListenerWithoutAddressPointsAtTheEntry) {
  EXPECT_EQ(error_of("listeners:\n  - address: 1.2.3.4:25\n  - role: submission\n    name: x\n"),
            "t.yaml:3:5: listener has no 'address'");
}

TEST(ConfigErrors, NoListeners) {
  EXPECT_EQ(error_of("hostname: a.example\n"),
            "t.yaml:1:1: no listeners configured (expected a 'listeners' list)");
  EXPECT_EQ(error_of("# header\n\nhostname: a.example\n"),
            "t.yaml:3:1: no listeners configured (expected a 'listeners' list)");
  EXPECT_EQ(error_of("listeners: []\n"),
            "t.yaml:1:12: no listeners configured (the 'listeners' list is empty)");
  // A list whose every entry is broken reports the entries, not an empty list as well.
  EXPECT_EQ(error_of("listeners:\n  - role: smtp\n"), "t.yaml:2:5: listener has no 'address'");
}

TEST(ConfigErrors, DuplicateListenerAddress) {
  EXPECT_EQ(error_of(R"(listeners:
  - address: 127.0.0.1:25
  - address: 127.0.0.1:587
  - address: 127.0.0.1:25
    role: submission
)"),
            "t.yaml:4:14: duplicate listener 127.0.0.1:25 (first defined at line 2)");
  // The same address written differently is still the same socket.
  EXPECT_EQ(error_of("listeners:\n  - address: '[::1]:25'\n  - address: "
                     "'[0:0:0:0:0:0:0:1]:25'\n"),
            "t.yaml:3:14: duplicate listener [::1]:25 (first defined at line 2)");
}

TEST(ConfigErrors, DuplicateListenerName) {
  EXPECT_EQ(error_of(R"(listeners:
  - address: 127.0.0.1:25
    name: mx
  - address: 127.0.0.1:26
    name: mx
)"),
            "t.yaml:5:11: duplicate listener name 'mx' (first defined at line 3)");
  // An explicit name may collide with another listener's default one.
  EXPECT_EQ(error_of(R"(listeners:
  - address: 127.0.0.1:25
  - address: 127.0.0.1:26
    name: smtp/127.0.0.1:25
)"),
            "t.yaml:4:11: duplicate listener name 'smtp/127.0.0.1:25' (first defined at line 2)");
}

TEST(ConfigErrors, EmptyDocument) {
  EXPECT_EQ(error_of(""),
            "t.yaml: empty configuration (expected a mapping with at least "
            "'listeners')");
  EXPECT_EQ(error_of("# only a comment\n\n"),
            "t.yaml: empty configuration (expected a mapping with at least 'listeners')");
  EXPECT_EQ(error_of("---\n"),
            "t.yaml: empty configuration (expected a mapping with at least 'listeners')");
}

TEST(ConfigErrors, TopLevelNotAMapping) {
  EXPECT_EQ(error_of("- address: 127.0.0.1:25\n"),
            "t.yaml:1:1: top level must be a mapping of settings (key: value)");
  EXPECT_EQ(error_of("\n  listeners\n"),
            "t.yaml:2:3: top level must be a mapping of settings (key: value)");
}

TEST(ConfigErrors, AliasesAnchorsAndTagsAreRefused) {
  const std::string tail = "listeners: [{address: 1.2.3.4:25}]\n";
  EXPECT_EQ(error_of("spool: &s /a\n" + tail), "t.yaml:1:8: anchors are not supported ('&s')");
  EXPECT_EQ(error_of("user: !!str a\n" + tail),
            "t.yaml:1:7: tags are not supported ('tag:yaml.org,2002:str')");
  EXPECT_EQ(error_of("control: !x {}\n" + tail), "t.yaml:1:10: tags are not supported ('!x')");
  const auto lines = errors_of("listeners:\n  - &l {address: 1.2.3.4:25}\n  - *l\n");
  const std::vector<std::string> expected = {"t.yaml:2:5: anchors are not supported ('&l')",
                                             "t.yaml:3:5: aliases are not supported"};
  EXPECT_EQ(lines, expected);
}

TEST(ConfigErrors, MultipleDocuments) {
  EXPECT_EQ(error_of("listeners: [{address: 1.2.3.4:25}]\n---\nuser: x\n"),
            "t.yaml:2:1: multiple documents are not supported (expected a single mapping)");
}

TEST(ConfigErrors, NestingLimit) {
  std::string deep = "listeners: [{address: 1.2.3.4:25}]\nx: ";
  deep += std::string(31, '[') + std::string(31, ']') + "\n";
  // 32 levels (the top-level mapping and 31 lists) are parsed; 'x' is merely unknown.
  EXPECT_TRUE(error_of(deep).starts_with("t.yaml:2:1: unknown key 'x'"));
  deep = "x: " + std::string(32, '[') + std::string(32, ']') + "\n";
  EXPECT_EQ(error_of(deep), "t.yaml:1:35: nesting deeper than 32 levels");
  // Far deeper input stops at the limit instead of recursing.
  EXPECT_EQ(error_of(std::string(100000, '[')), "t.yaml:1:33: nesting deeper than 32 levels");
}

TEST(ConfigErrors, TextTooLarge) {
  const std::string big = "# " + std::string(1 << 20, 'x') + "\n";
  EXPECT_EQ(error_of(big), "t.yaml: file too large (more than 1 MiB)");
}

TEST(ConfigErrors, AllErrorsAreReportedInFileOrder) {
  const auto lines = errors_of(R"(hostname: bad_name
spool: [x]
control:
  sokcet: /s
listeners:
  - address: 1.2.3.4
  - address: 127.0.0.1:25
    role: relay
  - name: orphan
extra: 1
)");
  const std::vector<std::string> expected = {
      ("t.yaml:1:11: invalid hostname 'bad_name' (expected letters, digits, '-' and '.', 1-253 "
       "characters)"),
      "t.yaml:2:8: 'spool' must be a string",
      "t.yaml:4:3: unknown key 'sokcet' in 'control' (expected one of: group, public, socket)",
      "t.yaml:6:14: bad listener address '1.2.3.4' (expected IP:port or [IPv6]:port)",
      "t.yaml:8:11: unknown listener role 'relay' (expected one of: smtp, submission, smtps)",
      "t.yaml:9:5: listener has no 'address'",
      ("t.yaml:10:1: unknown key 'extra' in top level (expected one of: control, "
       "credentials, dns, domains, empty_dir, hostname, limits, listeners, log, metrics, "
       "queue_user, "
       "relay_domains, relay_source, relay_timeouts, relay_tls, reply_rules, routes, run_dir, "
       "senders, "
       "shaping, spool, tls, "
       "trusted_networks, "
       "trusted_networks_relay, "
       "user, virtual_user)"),
  };
  EXPECT_EQ(lines, expected);
}

TEST(ConfigErrors, ErrorsCarryFileLineAndColumn) {
  const auto result = parse_config("listeners: 1\n", "/etc/postern/smtpd.yaml", kBase);
  ASSERT_FALSE(result.ok());
  ASSERT_EQ(result.error().size(), 1u);
  const ConfigError& error = result.error()[0];
  EXPECT_EQ(error.file, "/etc/postern/smtpd.yaml");
  EXPECT_EQ(error.line, 1);
  EXPECT_EQ(error.column, 12);
  EXPECT_EQ(error.message, "'listeners' must be a list");
}

TEST(ConfigErrorToString, Formats) {
  EXPECT_EQ((ConfigError{"f.yaml", 3, 5, "boom"}).to_string(), "f.yaml:3:5: boom");
  EXPECT_EQ((ConfigError{"f.yaml", 0, 0, "boom"}).to_string(), "f.yaml: boom");
  EXPECT_EQ((ConfigError{"f.yaml", 3, 0, "boom"}).to_string(), "f.yaml:3: boom");
}

// --- load_config ---

TEST(LoadConfig, MissingFile) {
  const auto result = load_config("/nonexistent/postern/smtpd.yaml");
  ASSERT_FALSE(result.ok());
  ASSERT_EQ(result.error().size(), 1u);
  EXPECT_EQ(result.error()[0].line, 0);
  EXPECT_EQ(result.error()[0].to_string(),
            "/nonexistent/postern/smtpd.yaml: cannot open: No such file or directory");
}

TEST(LoadConfig, RelativePathsResolveAgainstTheFilesDirectory) {
  const TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  fs::create_directory(dir.path() / "etc");
  const fs::path file = dir.path() / "etc" / "smtpd.yaml";
  write_file(file, R"(spool: spool
empty_dir: /var/empty
control:
  socket: ../run/smtpd.sock
listeners:
  - address: 127.0.0.1:2525
)");
  // Given as a relative path from another directory, so that the base is the file's own.
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir.path());
  const auto result = load_config("etc/smtpd.yaml");
  fs::current_path(old_cwd);
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const std::string real_dir = fs::canonical(dir.path() / "etc").string();
  EXPECT_EQ(result->file, "etc/smtpd.yaml");
  EXPECT_EQ(result->spool_dir, real_dir + "/spool");
  EXPECT_EQ(result->empty_dir, "/var/empty");
  EXPECT_EQ(result->control.socket_path, real_dir + "/../run/smtpd.sock");
}

TEST(LoadConfig, ErrorsNameTheFileAsGiven) {
  const TempDir dir;
  const fs::path file = dir.path() / "bad.yaml";
  write_file(file, "listeners:\n  - address: 1.2.3.4:99999\n");
  const auto result = load_config(file.string());
  ASSERT_FALSE(result.ok());
  ASSERT_EQ(result.error().size(), 1u);
  EXPECT_EQ(result.error()[0].to_string(),
            file.string() + ":2:14: bad listener address '1.2.3.4:99999': port must be 1-65535");
}

TEST(LoadConfig, FileTooLarge) {
  const TempDir dir;
  const fs::path file = dir.path() / "big.yaml";
  write_file(file, std::string((1 << 20) + 1, '#'));
  const auto result = load_config(file.string());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error()[0].to_string(), file.string() + ": file too large (more than 1 MiB)");
  // Exactly 1 MiB is read and parsed.
  const std::string valid = "listeners: [{address: 1.2.3.4:25}]\n";
  write_file(file, valid + std::string((size_t{1} << 20) - valid.size(), '#'));
  ASSERT_EQ(fs::file_size(file), size_t{1} << 20);
  EXPECT_TRUE(load_config(file.string()).ok());
}

TEST(LoadConfig, DirectoryIsRefused) {
  const TempDir dir;
  const auto result = load_config(dir.path().string());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error()[0].to_string(), dir.path().string() + ": cannot read: Is a directory");
}

TEST(LoadConfig, UnreadableFile) {
  const TempDir dir;
  const fs::path file = dir.path() / "secret.yaml";
  write_file(file, "listeners: [{address: 1.2.3.4:25}]\n");
  ASSERT_EQ(chmod(file.c_str(), 0), 0);
  const std::string expected = file.string() + ": cannot open: Permission denied";
  if (geteuid() != 0) {
    const auto result = load_config(file.string());
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error()[0].to_string(), expected);
    return;
  }
  // Root reads any file: the load runs as nobody, in a child, and says how it went.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    const auto result = load_config(file.string());
    _exit(!result.ok() && result.error()[0].to_string() == expected ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "as nobody: 1 = wrong error, 2 = cannot become nobody";
}

TEST(ListenerRoleName, Names) {
  EXPECT_EQ(listener_role_name(ListenerRole::smtp), "smtp");
  EXPECT_EQ(listener_role_name(ListenerRole::submission), "submission");
  EXPECT_EQ(listener_role_name(ListenerRole::smtps), "smtps");
}

TEST(ConfigErrors, TlsSectionAndSmtpsNeedEachOther) {
  EXPECT_EQ(error_of("listeners:\n  - {address: 127.0.0.1:465, role: smtps, name: s}\n"),
            "t.yaml:1:1: listener 's' is smtps, which needs a 'tls' section with certificate "
            "and key");
  EXPECT_EQ(error_of("listeners:\n  - address: 127.0.0.1:25\ntls: {certificate: c.pem}\n"),
            "t.yaml:3:6: 'tls' has no 'key'");
  EXPECT_EQ(error_of("listeners:\n  - address: 127.0.0.1:25\ntls: yes\n"),
            "t.yaml:3:6: 'tls' must be a mapping (with certificate and key)");
}

// --- client checks, trusted networks, DNS ---

// A listener's checks from a config holding only the listeners given.
std::vector<ClientChecks> checks_of(std::string_view listeners) {
  const auto result = parse("listeners:\n" + std::string(listeners));
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error()[0].to_string());
  std::vector<ClientChecks> out;
  if (result.ok())
    for (const Listener& listener : result->listeners) out.push_back(listener.checks);
  return out;
}

// The one error of a config with one smtp listener whose checks block is the text given,
// indented under "checks:" (line 4 of the file is the block's first line).
std::string checks_error(std::string_view block) {
  return error_of("listeners:\n  - address: 127.0.0.1:25\n    checks:\n" + std::string(block));
}

TEST(ClientChecks, DefaultsDependOnTheRole) {
  const auto checks = checks_of(R"(  - {address: 127.0.0.1:25}
  - {address: 127.0.0.1:26, role: smtp}
  - {address: 127.0.0.1:587, role: submission}
  - {address: 127.0.0.1:465, role: smtps}
tls: {certificate: c.pem, key: k.pem}
)");
  ASSERT_EQ(checks.size(), 4u);
  ClientChecks smtp;
  smtp.fcrdns = CheckAction::tag;
  EXPECT_EQ(checks[0], smtp);
  EXPECT_EQ(checks[0].fcrdns, CheckAction::tag);
  EXPECT_EQ(checks[0].dnsbl, CheckAction::off);
  EXPECT_EQ(checks[0].threshold, 1u);
  EXPECT_TRUE(checks[0].zones.empty());
  EXPECT_EQ(checks[1], smtp);
  EXPECT_EQ(checks[2], ClientChecks{});
  EXPECT_EQ(checks[2].fcrdns, CheckAction::off);
  EXPECT_EQ(checks[3], ClientChecks{});
}

TEST(ClientChecks, RoleWrittenAfterChecksStillDecidesTheDefault) {
  // With 'checks' given the role does not matter; without, the role is read first whatever
  // the order of the keys.
  const auto checks = checks_of(
      "  - {role: submission, address: 127.0.0.1:587}\n"
      "  - {checks: {}, role: smtp, address: 127.0.0.1:25}\n");
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_EQ(checks[0].fcrdns, CheckAction::off);
  EXPECT_EQ(checks[1].fcrdns, CheckAction::off);
}

TEST(ClientChecks, KeysLeftOutOfAGivenBlockAreOff) {
  const auto checks = checks_of(
      "  - {address: 127.0.0.1:25, checks: {}}\n"
      "  - {address: 127.0.0.1:26, checks: {threshold: 1, zones: [x.example]}}\n"
      "  - {address: 127.0.0.1:27, role: submission, checks: {fcrdns: refuse}}\n");
  ASSERT_EQ(checks.size(), 3u);
  EXPECT_EQ(checks[0], ClientChecks{});
  // Zones without dnsbl refuse; fcrdns given up once the block is there.
  EXPECT_EQ(checks[1].fcrdns, CheckAction::off);
  EXPECT_EQ(checks[1].dnsbl, CheckAction::refuse);
  EXPECT_EQ(checks[2].fcrdns, CheckAction::refuse);
  EXPECT_EQ(checks[2].dnsbl, CheckAction::off);
}

TEST(ClientChecks, EveryKeyIsRead) {
  const auto checks = checks_of(R"(  - address: 0.0.0.0:25
    checks:
      fcrdns: refuse
      dnsbl: tag
      threshold: 5
      zones:
        - zone: Zen.SpamHaus.org.
          codes: [127.0.0.2, "127.0.0.4", 127.255.255.255]
          weight: 4
        - bl.example.org
        - {zone: _x-1.example, weight: 1000}
)");
  ASSERT_EQ(checks.size(), 1u);
  const ClientChecks& c = checks[0];
  EXPECT_EQ(c.fcrdns, CheckAction::refuse);
  EXPECT_EQ(c.dnsbl, CheckAction::tag);
  EXPECT_EQ(c.threshold, 5u);
  const std::vector<DnsblZone> zones = {
      {"zen.spamhaus.org", {"127.0.0.2", "127.0.0.4", "127.255.255.255"}, 4},
      {"bl.example.org", {}, 1},
      {"_x-1.example", {}, 1000},
  };
  EXPECT_EQ(c.zones, zones);
}

TEST(ClientChecks, EachActionIsAccepted) {
  const auto checks = checks_of(
      "  - {address: 127.0.0.1:25, checks: {fcrdns: off, dnsbl: off}}\n"
      "  - {address: 127.0.0.1:26, checks: {fcrdns: tag, dnsbl: tag, "
      "zones: [a.example]}}\n"
      "  - {address: 127.0.0.1:27, checks: {fcrdns: refuse, dnsbl: "
      "refuse, zones: [a.example]}}\n"
      "  - {address: 127.0.0.1:28, checks: {dnsbl: off, zones: "
      "[a.example]}}\n");
  ASSERT_EQ(checks.size(), 4u);
  EXPECT_EQ(checks[0].fcrdns, CheckAction::off);
  EXPECT_EQ(checks[0].dnsbl, CheckAction::off);
  EXPECT_EQ(checks[1].fcrdns, CheckAction::tag);
  EXPECT_EQ(checks[1].dnsbl, CheckAction::tag);
  EXPECT_EQ(checks[2].fcrdns, CheckAction::refuse);
  EXPECT_EQ(checks[2].dnsbl, CheckAction::refuse);
  // Off with zones: they are kept, not asked.
  EXPECT_EQ(checks[3].dnsbl, CheckAction::off);
  EXPECT_EQ(checks[3].zones.size(), 1u);
}

TEST(ClientChecks, ThresholdMayEqualTheSumOfWeights) {
  const auto checks = checks_of(
      "  - address: 127.0.0.1:25\n    checks:\n      threshold: 1000\n      zones:\n"
      "        - {zone: a.example, weight: 999}\n        - b.example\n");
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].threshold, 1000u);
}

TEST(ClientChecks, ZoneNameLimits) {
  const std::string label63 = std::string(63, 'a');
  // 189 octets: room is left for the 64 octets of a reversed IPv6 address in a 253-octet name.
  const std::string longest = label63 + "." + label63 + "." + std::string(61, 'c');
  ASSERT_EQ(longest.size(), 189u);
  for (const std::string& good : {std::string("bl"), std::string("a-b_c.0x.example"), longest,
                                  longest + ".", std::string("-x.example")}) {
    const auto checks =
        checks_of("  - {address: 127.0.0.1:25, checks: {zones: ['" + good + "']}}\n");
    ASSERT_EQ(checks.size(), 1u) << good;
    ASSERT_EQ(checks[0].zones.size(), 1u);
    EXPECT_EQ(checks[0].zones[0].zone + (good.back() == '.' ? "." : ""), good);
  }
  const std::string expected =
      " (expected labels of 1-63 letters, digits, '-' or '_', at "
      "most 189 characters)";
  for (const std::string& bad :
       {longest + "c", "a." + std::string(64, 'b'), std::string("a..b"), std::string(".a"),
        std::string("."), std::string(""), std::string("a b"), std::string("a/b"),
        std::string("m\u00e9l.example"), std::string("a.example.."), std::string("*.example")}) {
    EXPECT_EQ(checks_error("      zones: ['" + bad + "']\n"),
              "t.yaml:4:15: invalid DNSBL zone " +
                  (bad.size() > 64 ? "'" + bad.substr(0, 64) + "...'" : "'" + bad + "'") + expected)
        << bad;
  }
}

TEST(ClientChecksErrors, BadActions) {
  EXPECT_EQ(checks_error("      fcrdns: yes\n"),
            "t.yaml:4:15: bad 'fcrdns' value 'yes' (expected one of: off, tag, refuse)");
  EXPECT_EQ(checks_error("      dnsbl: Refuse\n      zones: [a.example]\n"),
            "t.yaml:4:14: bad 'dnsbl' value 'Refuse' (expected one of: off, tag, refuse)");
  EXPECT_EQ(checks_error("      fcrdns: [tag]\n"), "t.yaml:4:15: 'fcrdns' must be a string");
}

TEST(ClientChecksErrors, DnsblNeedsZones) {
  EXPECT_EQ(checks_error("      dnsbl: refuse\n"),
            "t.yaml:4:14: 'dnsbl: refuse' needs a list of 'zones' to ask");
  EXPECT_EQ(checks_error("      fcrdns: off\n      dnsbl: tag\n"),
            "t.yaml:5:14: 'dnsbl: tag' needs a list of 'zones' to ask");
  // Off without zones is no error.
  EXPECT_EQ(checks_of("  - {address: 127.0.0.1:25, checks: {dnsbl: off}}\n").size(), 1u);
}

TEST(ClientChecksErrors, ThresholdThatCanNeverBeReached) {
  EXPECT_EQ(checks_error("      threshold: 4\n      zones:\n        - {zone: a.example, weight: "
                         "2}\n        - b.example\n"),
            "t.yaml:4:18: 'threshold' 4 can never be reached (the weights of the zones add up "
            "to 3)");
  EXPECT_EQ(checks_error("      threshold: 2\n"),
            "t.yaml:4:18: 'threshold' 2 can never be reached (the weights of the zones add up "
            "to 0)");
  // A broken zone is reported alone: its weight is unknown, so the sum is too.
  EXPECT_EQ(checks_error("      threshold: 3\n      zones:\n        - {zone: a.example, weight: "
                         "x}\n        - {zone: b.example, weight: 2}\n"),
            "t.yaml:6:37: bad 'weight' value 'x': expected a number from 1 to 1000");
}

TEST(ClientChecksErrors, ThresholdAndWeightRange) {
  const std::string zones = "      zones: [a.example]\n";
  for (const std::string bad : {"0", "1001", "-1", "1.5", "2K", "''"}) {
    const std::string shown = bad == "''" ? "" : bad;
    EXPECT_EQ(
        checks_error("      threshold: " + bad + "\n" + zones),
        "t.yaml:4:18: bad 'threshold' value '" + shown + "': expected a number from 1 to 1000")
        << bad;
    EXPECT_EQ(checks_error("      zones: [{zone: a.example, weight: " + bad + "}]\n"),
              "t.yaml:4:41: bad 'weight' value '" + shown + "': expected a number from 1 to 1000")
        << bad;
  }
}

TEST(ClientChecksErrors, DuplicateZones) {
  EXPECT_EQ(checks_error("      zones:\n        - zen.spamhaus.org\n        - b.example\n"
                         "        - {zone: ZEN.spamhaus.org.}\n"),
            "t.yaml:7:18: duplicate zone 'zen.spamhaus.org' (first at line 5)");
  // The same zone on two listeners is no duplicate.
  EXPECT_EQ(checks_of("  - {address: 127.0.0.1:25, checks: {zones: [a.example]}}\n"
                      "  - {address: 127.0.0.1:26, checks: {zones: [a.example]}}\n")
                .size(),
            2u);
}

TEST(ClientChecksErrors, Codes) {
  const std::string head = "      zones:\n        - zone: a.example\n          codes: ";
  const std::string expected = " (expected an IPv4 address in 127.0.0.0/8)";
  for (const std::string bad : {"10.0.0.2", "128.0.0.1", "'::1'", "'::ffff:127.0.0.2'",
                                "127.0.0.02", "127.1", "127.0.0.0/8", "localhost", "''"}) {
    std::string shown = bad;
    if (shown.front() == '\'') shown = shown.substr(1, shown.size() - 2);
    EXPECT_EQ(checks_error(head + "[" + bad + "]\n"),
              "t.yaml:6:19: bad code '" + shown + "'" + expected)
        << bad;
  }
  EXPECT_EQ(checks_error(head + "[[127.0.0.2]]\n"), "t.yaml:6:19: bad code" + expected);
  EXPECT_EQ(checks_error(head + "[127.0.0.2, 127.0.0.3, 127.0.0.2]\n"),
            "t.yaml:6:41: duplicate code 127.0.0.2 (first at line 6)");
  EXPECT_EQ(checks_error(head + "[]\n"),
            "t.yaml:6:18: 'codes' is empty (leave it out to count any address in 127.0.0.0/8)");
  EXPECT_EQ(checks_error(head + "127.0.0.2\n"),
            "t.yaml:6:18: 'codes' must be a list of addresses in 127.0.0.0/8");
}

TEST(ClientChecksErrors, WrongShapes) {
  EXPECT_EQ(checks_error("      - fcrdns\n"),
            "t.yaml:4:7: 'checks' must be a mapping (with fcrdns, dnsbl, threshold, zones)");
  EXPECT_EQ(error_of("listeners:\n  - {address: 127.0.0.1:25, checks: tag}\n"),
            "t.yaml:2:37: 'checks' must be a mapping (with fcrdns, dnsbl, threshold, zones)");
  EXPECT_EQ(checks_error("      zones: a.example\n"),
            "t.yaml:4:14: 'zones' must be a list of DNSBL zones");
  EXPECT_EQ(checks_error("      zones: []\n"),
            "t.yaml:4:14: 'zones' is empty (leave it out when no DNSBL is asked)");
  EXPECT_EQ(checks_error("      zones: [[a.example]]\n"),
            "t.yaml:4:15: each zone must be a name or a mapping with zone, codes and weight");
  EXPECT_EQ(checks_error("      zones: [{zone: [a.example]}]\n"),
            "t.yaml:4:22: each zone must be a name or a mapping with zone, codes and weight");
  EXPECT_EQ(checks_error("      zones: [{weight: 2}]\n"), "t.yaml:4:15: zone entry has no 'zone'");
}

TEST(ClientChecksErrors, UnknownKeys) {
  EXPECT_EQ(checks_error("      fcrdns: tag\n      rbl: refuse\n"),
            "t.yaml:5:7: unknown key 'rbl' in 'checks' (expected one of: fcrdns, dnsbl, "
            "threshold, zones)");
  EXPECT_EQ(checks_error("      zones:\n        - zone: a.example\n          score: 2\n"),
            "t.yaml:6:11: unknown key 'score' in zone entry (expected one of: zone, codes, "
            "weight)");
  EXPECT_EQ(checks_error("      fcrdns: tag\n      fcrdns: off\n"),
            "t.yaml:5:7: duplicate key 'fcrdns' (first at line 4)");
}

TEST(ClientChecksErrors, EveryErrorIsReported) {
  const auto lines = errors_of(R"(listeners:
  - address: 127.0.0.1:25
    checks:
      fcrdns: maybe
      dnsbl: refuse
  - address: 127.0.0.1:26
    checks:
      zones: [bad_zone!, {zone: ok.example, codes: [1.2.3.4]}]
)");
  const std::vector<std::string> expected = {
      "t.yaml:4:15: bad 'fcrdns' value 'maybe' (expected one of: off, tag, refuse)",
      "t.yaml:5:14: 'dnsbl: refuse' needs a list of 'zones' to ask",
      "t.yaml:8:15: invalid DNSBL zone 'bad_zone!' (expected labels of 1-63 letters, digits, "
      "'-' or '_', at most 189 characters)",
      "t.yaml:8:53: bad code '1.2.3.4' (expected an IPv4 address in 127.0.0.0/8)",
  };
  EXPECT_EQ(lines, expected);
}

TEST(TrustedNetworks, DefaultIsLoopback) {
  const auto result = parse("listeners: [{address: 127.0.0.1:25}]\n");
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->lookup.trusted_networks.size(), 2u);
  EXPECT_EQ(result->lookup.trusted_networks[0].to_string(), "127.0.0.0/8");
  EXPECT_EQ(result->lookup.trusted_networks[1].to_string(), "::1/128");
}

TEST(TrustedNetworks, AListReplacesTheDefault) {
  const auto result = parse(R"(trusted_networks:
  - 192.0.2.0/24
  - "2001:DB8::/32"
  - 198.51.100.7
  - "::ffff:0:0/96"
listeners: [{address: 127.0.0.1:25}]
)");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  std::vector<std::string> got;
  for (const Network& network : result->lookup.trusted_networks) got.push_back(network.to_string());
  const std::vector<std::string> expected = {"192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32",
                                             "::ffff:0.0.0.0/96"};
  EXPECT_EQ(got, expected);
}

TEST(TrustedNetworks, AnEmptyListTrustsNobody) {
  const auto result = parse("trusted_networks: []\nlisteners: [{address: 127.0.0.1:25}]\n");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->lookup.trusted_networks.empty());
}

TEST(TrustedNetworksErrors, Messages) {
  const std::string tail = "listeners: [{address: 127.0.0.1:25}]\n";
  EXPECT_EQ(error_of("trusted_networks: [192.0.2.1/24]\n" + tail),
            "t.yaml:1:20: bad network '192.0.2.1/24': host bits set; did you mean "
            "192.0.2.0/24?");
  EXPECT_EQ(error_of("trusted_networks:\n  - 127.0.0.0/8\n  - '2001:db8::1/32'\n" + tail),
            "t.yaml:3:5: bad network '2001:db8::1/32': host bits set; did you mean "
            "2001:db8::/32?");
  EXPECT_EQ(error_of("trusted_networks: [10.0.0.0/33]\n" + tail),
            "t.yaml:1:20: bad network '10.0.0.0/33': prefix must be 0-32");
  EXPECT_EQ(error_of("trusted_networks: ['::/129']\n" + tail),
            "t.yaml:1:20: bad network '::/129': prefix must be 0-128");
  const std::string syntax =
      " (expected an IPv4 or IPv6 address with an optional /prefix, such as 192.0.2.0/24)";
  for (const std::string bad :
       {"localhost", "10/8", "10.0.0.0/", "10.0.0.0/a", "/8", "10.0.0.0/+8", "10.0.0.0/0008",
        "10.0.0.0/8/8", "'fe80::1%eth0'", "' 10.0.0.0/8'", "''", "127.1", "10.0.0.0 /8"}) {
    std::string shown = bad;
    if (shown.front() == '\'') shown = shown.substr(1, shown.size() - 2);
    EXPECT_EQ(error_of("trusted_networks: [" + bad + "]\n" + tail),
              "t.yaml:1:20: bad network '" + shown + "'" + syntax)
        << bad;
  }
  EXPECT_EQ(error_of("trusted_networks: [{a: b}]\n" + tail), "t.yaml:1:20: bad network" + syntax);
  EXPECT_EQ(error_of("trusted_networks: 127.0.0.0/8\n" + tail),
            "t.yaml:1:19: 'trusted_networks' must be a list");
}

TEST(TrustedNetworksErrors, Duplicates) {
  const std::string tail = "listeners: [{address: 127.0.0.1:25}]\n";
  EXPECT_EQ(error_of("trusted_networks:\n  - '::1'\n  - 10.0.0.0/8\n  - '0::1/128'\n" + tail),
            "t.yaml:4:5: duplicate network ::1/128 (first at line 2)");
  EXPECT_EQ(error_of("trusted_networks: [192.0.2.0/24, 192.0.2.0/24]\n" + tail),
            "t.yaml:1:34: duplicate network 192.0.2.0/24 (first at line 1)");
  // Overlapping but different networks are allowed.
  EXPECT_TRUE(parse("trusted_networks: [10.0.0.0/8, 10.0.0.0/16, 10.0.0.1]\n" + tail).ok());
}

TEST(Dns, DefaultsWhenAbsent) {
  const auto result = parse("listeners: [{address: 127.0.0.1:25}]\n");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->lookup.dns.resolvers.empty());
  EXPECT_EQ(result->lookup.dns.timeout, 5u);
  EXPECT_EQ(result->lookup.dns, Dns{});
  const auto empty = parse("dns: {}\nlisteners: [{address: 127.0.0.1:25}]\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->lookup.dns, Dns{});
}

TEST(Dns, ResolversAreWrittenCanonically) {
  const auto result = parse(R"(dns:
  resolvers: [127.0.0.1, "127.0.0.1@5353", "::1@53", "2001:DB8:0::1@00053", 192.0.2.1@65535]
  timeout: 60
listeners: [{address: 127.0.0.1:25}]
)");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const std::vector<std::string> expected = {"127.0.0.1", "127.0.0.1@5353", "::1@53",
                                             "2001:db8::1@53", "192.0.2.1@65535"};
  EXPECT_EQ(result->lookup.dns.resolvers, expected);
  EXPECT_EQ(result->lookup.dns.timeout, 60u);
  const auto seconds = parse("dns: {timeout: 1s}\nlisteners: [{address: 127.0.0.1:25}]\n");
  ASSERT_TRUE(seconds.ok());
  EXPECT_EQ(seconds->lookup.dns.timeout, 1u);
}

TEST(DnsErrors, Messages) {
  const std::string tail = "listeners: [{address: 127.0.0.1:25}]\n";
  for (const std::string bad : {"localhost", "127.0.0.1:53", "'[::1]:53'", "127.0.0.1@",
                                "127.0.0.1@x", "'@53'", "127.0.0.1@+53", "''", "'::1@53@53'"}) {
    std::string shown = bad;
    if (shown.front() == '\'') shown = shown.substr(1, shown.size() - 2);
    EXPECT_EQ(error_of("dns: {resolvers: [" + bad + "]}\n" + tail),
              "t.yaml:1:19: bad resolver '" + shown +
                  "' (expected an IP address, optionally followed by @port)")
        << bad;
  }
  EXPECT_EQ(error_of("dns: {resolvers: [127.0.0.1@0]}\n" + tail),
            "t.yaml:1:19: bad resolver '127.0.0.1@0': port must be 1-65535");
  EXPECT_EQ(error_of("dns: {resolvers: ['::1@65536']}\n" + tail),
            "t.yaml:1:19: bad resolver '::1@65536': port must be 1-65535");
  EXPECT_EQ(error_of("dns:\n  resolvers:\n    - 127.0.0.1@53\n    - 127.0.0.1\n" + tail),
            "t.yaml:4:7: duplicate resolver 127.0.0.1 (first at line 3)");
  EXPECT_EQ(error_of("dns: {resolvers: 127.0.0.1}\n" + tail),
            "t.yaml:1:18: 'resolvers' must be a list of IP addresses");
  for (const std::string bad : {"0", "61", "1m", "x", "''"}) {
    const std::string shown = bad == "''" ? "" : bad;
    EXPECT_EQ(error_of("dns:\n  timeout: " + bad + "\n" + tail),
              "t.yaml:2:12: bad 'timeout' value '" + shown +
                  "': expected a number from 1 to 60 (suffixes: s)")
        << bad;
  }
  EXPECT_EQ(error_of("dns:\n  timeout: 5\n  retry: 2\n" + tail),
            "t.yaml:3:3: unknown key 'retry' in 'dns' (expected one of: resolvers, timeout)");
  EXPECT_EQ(error_of("dns: [127.0.0.1]\n" + tail),
            "t.yaml:1:6: 'dns' must be a mapping (with resolvers and timeout)");
}

// --- golden files ---

TEST(GoldenFiles, EveryYamlMatchesItsExpected) {
  const fs::path dir = fs::path(POSTERN_TEST_DATA_DIR) / "config";
  std::vector<fs::path> inputs;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".yaml") inputs.push_back(entry.path());
  }
  std::sort(inputs.begin(), inputs.end());
  ASSERT_GE(inputs.size(), 10u) << "golden files missing from " << dir;
  for (const fs::path& input : inputs) {
    SCOPED_TRACE(input.string());
    const std::string name = input.filename().string();
    fs::path expected_path = input;
    expected_path.replace_extension(".expected");
    ASSERT_TRUE(fs::exists(expected_path)) << expected_path;
    const std::string expected = read_file(expected_path);
    const auto result = parse_config(read_file(input), name, kBase);
    if (name.starts_with("valid-")) {
      ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
      EXPECT_EQ(dump(result.value()), expected);
    } else {
      ASSERT_TRUE(name.starts_with("bad-")) << "golden files are valid-* or bad-*";
      ASSERT_FALSE(result.ok());
      std::string actual;
      for (const ConfigError& error : result.error()) actual += error.to_string() + "\n";
      EXPECT_EQ(actual, expected);
    }
  }
}

}  // namespace
}  // namespace postern::smtpd

namespace postern::smtpd {
namespace {

constexpr char kListener[] = "listeners:\n  - address: 127.0.0.1:25\n";

TEST(ParseConfig, RoutesAsTheIssueWritesThem) {
  const auto result = parse(std::string(kListener) + R"(routes:
  - match: [relay.test, "*.relay.test"]
    via: smtp://127.0.0.1:2613
  - match: Lmtp.Test
    via: ["lmtp://[::1]:24", smtp://backup.example.net]
  - match: smarthost.test
    via: smtps://mail.example.net
    auth: relay-auth
    tls: verify
  - match: "*.bank.test"
    tls: verify
relay_tls:
  policy: encrypt
  ca_file: cas.pem
  plaintext_fallback: false
limits:
  relay_connections: 50
  destination_connections: 4
  messages_per_connection: 10
  connection_idle: 2m
  hop_count: 30
)");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const mta::Settings& mta = result.value().mta;
  ASSERT_EQ(mta.routes.size(), 4u);
  EXPECT_EQ(mta.routes[0].match, (std::vector<std::string>{"relay.test", "*.relay.test"}));
  ASSERT_EQ(mta.routes[0].via.size(), 1u);
  EXPECT_EQ(mta.routes[0].via[0].to_string(), "smtp://127.0.0.1:2613");
  EXPECT_EQ(mta.routes[1].match, std::vector<std::string>{"lmtp.test"});
  ASSERT_EQ(mta.routes[1].via.size(), 2u);
  EXPECT_EQ(mta.routes[1].via[0].to_string(), "lmtp://[::1]:24");
  EXPECT_EQ(mta.routes[1].via[1].to_string(), "smtp://backup.example.net:25");
  EXPECT_EQ(mta.routes[2].auth, std::string(kBase) + "/relay-auth");
  EXPECT_EQ(mta.routes[0].tls, std::nullopt);
  EXPECT_EQ(mta.routes[2].tls, mail::TlsPolicy::verify);
  EXPECT_TRUE(mta.routes[3].via.empty());  // by MX, verified
  EXPECT_EQ(mta.routes[3].tls, mail::TlsPolicy::verify);
  EXPECT_EQ(mta.tls_policy, mail::TlsPolicy::encrypt);
  EXPECT_FALSE(mta.plaintext_fallback);
  EXPECT_EQ(result.value().relay_ca_file, std::string(kBase) + "/cas.pem");
  EXPECT_EQ(mta.connections, 50u);
  EXPECT_EQ(mta.destination_connections, 4u);
  EXPECT_EQ(mta.messages_per_connection, 10u);
  EXPECT_EQ(mta.connection_idle, 120u);
  EXPECT_EQ(mta.hop_count, 30u);
  EXPECT_EQ(mta.local_addresses, std::vector<std::string>{"127.0.0.1:25"});
}

TEST(ParseConfig, RouteDefaults) {
  const auto result = parse(kListener);
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const mta::Settings& mta = result.value().mta;
  EXPECT_TRUE(mta.routes.empty());
  EXPECT_EQ(mta.connections, 500u);
  EXPECT_EQ(mta.destination_connections, 20u);
  EXPECT_EQ(mta.messages_per_connection, 100u);
  EXPECT_EQ(mta.connection_idle, 5u);
  EXPECT_EQ(mta.hop_count, 100u);
  EXPECT_EQ(mta.tls_policy, mail::TlsPolicy::opportunistic);
  EXPECT_TRUE(mta.plaintext_fallback);
  EXPECT_EQ(result.value().relay_ca_file, std::nullopt);
}

TEST(ConfigErrors, RoutesSayWhatIsWrongAndWhere) {
  const std::string head = std::string(kListener) + "routes:\n";
  EXPECT_EQ(error_of(head + "  - match: relay.test\n    via: smtp://2001:db8::1\n"),
            "t.yaml:5:10: bad server 'smtp://2001:db8::1': an IPv6 address must be written in "
            "brackets: [2001:db8::1]:25");
  EXPECT_EQ(error_of(head + "  - match: relay.test\n    via: ftp://x.example\n"),
            "t.yaml:5:10: bad server 'ftp://x.example': expected smtp://, smtp+tls://, smtps:// or "
            "lmtp:// before the server");
  EXPECT_EQ(error_of(head + "  - match: [relay.test, 'bad domain']\n    via: smtp://x.example\n"),
            "t.yaml:4:25: bad domain 'bad domain' (expected a domain such as example.org, or "
            "*.example.org for every domain under it)");
  EXPECT_EQ(error_of(head + "  - match: relay.test\n"),
            "t.yaml:4:5: route without 'via', 'tls' or 'source' (servers to send to, or the TLS "
            "policy or source address of mail sent by MX)");
  EXPECT_EQ(error_of(head + "  - match: relay.test\n    via: smtp://x.example\n    auth: /a\n"),
            "t.yaml:6:5: 'auth' needs TLS to every server of the route: smtp://x.example:25 is "
            "not smtp+tls:// or smtps://, and the route's 'tls' is not encrypt or verify");
  EXPECT_EQ(error_of(head + "  - match: relay.test\n    tls: verify\n    auth: /a\n"),
            "t.yaml:6:5: 'auth' needs the servers it is for ('via')");
  EXPECT_EQ(error_of(head + "  - match: relay.test\n    tls: sometimes\n"),
            "t.yaml:5:10: bad 'tls' value 'sometimes' (expected one of: none, opportunistic, "
            "encrypt, verify)");
  EXPECT_EQ(error_of(head + "  - match: relay.test\n    tls: opportunistic\n"
                            "    via: smtps://x.example\n"),
            "t.yaml:6:10: server 'smtps://x.example' is TLS only; the route's 'tls' must be "
            "encrypt or verify, not opportunistic");
  EXPECT_EQ(error_of(head + "  - {match: a.test, via: smtp://x.example}\n"
                            "  - {match: [b.test, A.test], via: smtp://y.example}\n"),
            "t.yaml:5:5: domain 'a.test' is matched by an earlier route (line 4)");
  EXPECT_EQ(error_of(head + "  - match: a.test\n    via: smtp://x.example\n    port: 25\n"),
            "t.yaml:6:5: unknown key 'port' in a route (expected one of: match, via, auth, tls, "
            "source)");
  EXPECT_EQ(error_of(std::string(kListener) + "routes: smtp://x.example\n"),
            "t.yaml:3:9: 'routes' must be a list of routes (each with match, and via or tls)");
}

// Source addresses: a route's, a shaping rule's and relay_source, each one address or one of
// each family, kept as the one printer writes them.
TEST(ParseConfig, SourceAddresses) {
  const auto result = parse(std::string(kListener) + R"(relay_source: [2001:DB8::1, 192.0.2.7]
routes:
  - match: relay.test
    via: smtp://127.0.0.1:2613
    source: 127.0.0.2
  - match: "*.mx.test"
    source: ["::1"]
shaping:
  - mx: ["*.google.com"]
    source: [198.51.100.1]
)");
  ASSERT_TRUE(result.ok()) << result.error()[0].to_string();
  const mta::Settings& mta = result.value().mta;
  EXPECT_EQ(mta.relay_source, (std::vector<std::string>{"2001:db8::1", "192.0.2.7"}));
  ASSERT_EQ(mta.routes.size(), 2u);
  EXPECT_EQ(mta.routes[0].source, std::vector<std::string>{"127.0.0.2"});
  EXPECT_TRUE(mta.routes[1].via.empty());  // by MX, from ::1
  EXPECT_EQ(mta.routes[1].source, std::vector<std::string>{"::1"});
  ASSERT_EQ(mta.shaping.size(), 1u);
  EXPECT_EQ(mta.shaping[0].source, std::vector<std::string>{"198.51.100.1"});
  EXPECT_TRUE(parse(kListener).value().mta.relay_source.empty());
}

TEST(ConfigErrors, SourceAddressesSayWhatIsWrongAndWhere) {
  const std::string head = std::string(kListener);
  EXPECT_EQ(error_of(head + "relay_source: mail.example.org\n"),
            "t.yaml:3:15: bad source address 'mail.example.org' (expected an IP address such as "
            "192.0.2.1 or 2001:db8::1, without a port)");
  EXPECT_EQ(error_of(head + "relay_source: 127.0.0.2:25\n"),
            "t.yaml:3:15: bad source address '127.0.0.2:25' (expected an IP address such as "
            "192.0.2.1 or 2001:db8::1, without a port)");
  EXPECT_EQ(error_of(head + "relay_source: [127.0.0.2, 127.0.0.3]\n"),
            "t.yaml:3:27: source address '127.0.0.3' is a second IPv4 address (give at most one "
            "IPv4 and one IPv6 address: each is used for the servers of its family)");
  EXPECT_EQ(error_of(head + "relay_source: 0.0.0.0\n"),
            "t.yaml:3:15: source address '0.0.0.0' is the wildcard address; leave 'source' out "
            "to let the system choose");
  EXPECT_EQ(error_of(head + "relay_source: []\n"),
            "t.yaml:3:15: 'relay_source' must be an IP address or a non-empty list of them");
  EXPECT_EQ(error_of(head + "routes:\n  - match: a.test\n    via: smtp://x.example\n"
                            "    source: [\"::1\", \"::2\"]\n"),
            "t.yaml:6:21: source address '::2' is a second IPv6 address (give at most one IPv4 "
            "and one IPv6 address: each is used for the servers of its family)");
  EXPECT_EQ(error_of(head + "shaping:\n  - match: [a.test]\n    source: a.test\n"),
            "t.yaml:5:13: bad source address 'a.test' (expected an IP address such as 192.0.2.1 "
            "or 2001:db8::1, without a port)");
}

}  // namespace
}  // namespace postern::smtpd
