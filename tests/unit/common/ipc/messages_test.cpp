// The message schema: each message survives a round trip, every truncation and trailing byte is
// refused, and Dispatcher turns away frames the schema does not allow.
#include "common/ipc/messages.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <limits>
#include <set>
#include <string>
#include <type_traits>

#include "tests/all_messages.hpp"

#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"

namespace postern::msg {
namespace {

StatusReply sample_status_reply() {
  return StatusReply{.started_at = 1700000000,
                     .counters = {{"listeners", 3}, {"frames", uint64_t{1} << 40}},
                     .peers = {{Role::queue, 1234}, {Role::lookup, 0}}};
}

CtlStatus sample_ctl_status() {
  CtlStatus s;
  s.processes.push_back({.role = Role::parent,
                         .pid = 1,
                         .started_at = 5,
                         .restarts = 0,
                         .counters = {{"listeners", 3}},
                         .peers = {}});
  s.processes.push_back({.role = Role::queue,
                         .pid = 2,
                         .started_at = 6,
                         .restarts = 4,
                         .counters = {},
                         .peers = {{Role::smtp, 3}},
                         .crashes = 3,
                         .restart_in_ms = 400});
  return s;
}

template <typename M>
M round_trip(const M& m) {
  std::optional<M> back = decode_payload<M>(encode_payload(m));
  EXPECT_TRUE(back.has_value()) << M::kInfo.name;
  return back.value_or(M{});
}

// Every strict prefix of a valid payload must be refused, and so must one extra byte.
template <typename M>
void expect_strict(const M& m) {
  const std::vector<uint8_t> bytes = encode_payload(m);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_payload<M>(std::span(bytes.data(), n)).has_value())
        << M::kInfo.name << " accepted a prefix of " << n << " bytes";
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_payload<M>(longer).has_value()) << M::kInfo.name << " took a trailing byte";
}

TEST(Messages, RoundTrips) {
  Start start{
      .drop_privileges = true, .uid = 100, .gid = 101, .chroot_dir = "/var/empty", .verbose = true};
  Start s2 = round_trip(start);
  EXPECT_TRUE(s2.drop_privileges);
  EXPECT_EQ(s2.uid, 100u);
  EXPECT_EQ(s2.gid, 101u);
  EXPECT_EQ(s2.chroot_dir, "/var/empty");
  EXPECT_TRUE(s2.verbose);

  EXPECT_EQ(round_trip(PeerChannel{.peer = Role::lookup}).peer, Role::lookup);
  PeerFault fault = round_trip(PeerFault{.peer = Role::smtp, .reason = "bad"});
  EXPECT_EQ(fault.peer, Role::smtp);
  EXPECT_EQ(fault.reason, "bad");

  StatusReply reply = round_trip(sample_status_reply());
  EXPECT_EQ(reply.started_at, 1700000000);
  EXPECT_EQ(reply.counters, sample_status_reply().counters);
  EXPECT_EQ(reply.peers, sample_status_reply().peers);

  EXPECT_TRUE(round_trip(SetVerbose{.verbose = true}).verbose);
  EXPECT_EQ(round_trip(smtp::Settings{.hostname = "mx.example"}).hostname, "mx.example");
  EXPECT_EQ(round_trip(queue::Settings{.spool_dir = "/"}).spool_dir, "/");
  EXPECT_EQ(round_trip(queue::Settings{.spool_dir = "/", .delay_warning = 0}).delay_warning, 0u);
  EXPECT_EQ(round_trip(queue::Settings{.spool_dir = "/", .delay_warning = 7200}).delay_warning,
            7200u);
  ListenerAdd add = round_trip(ListenerAdd{.id = 7,
                                           .name = "submission",
                                           .role = config::ListenerRole::submission,
                                           .address = "[::1]:587"});
  EXPECT_EQ(add.id, 7u);
  EXPECT_EQ(add.name, "submission");
  EXPECT_EQ(add.role, config::ListenerRole::submission);
  EXPECT_EQ(add.address, "[::1]:587");
  EXPECT_EQ(round_trip(ListenerRemove{.id = 9}).id, 9u);
  EXPECT_FALSE(round_trip(CtlSetVerbose{.verbose = false}).verbose);
  EXPECT_EQ(round_trip(sample_ctl_status()).processes, sample_ctl_status().processes);
  CtlResult result = round_trip(CtlResult{.ok = false, .text = "no"});
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.text, "no");
}

// The queue sizes its DeliverLocal frames by these constants: they must cover the encoding.
TEST(Messages, LocalJobSizesCoverTheEncoding) {
  DeliverLocal job{.id = "0123456789abcdef", .sender = std::string(300, 's'), .recipients = {}};
  size_t estimate = kLocalJobOverhead + job.sender.size();
  for (uint32_t i = 0; estimate < kLocalJobBytes; ++i) {
    const std::string address = std::string(64, 'u') + std::to_string(i) + "@localhost";
    job.recipients.push_back({.index = i, .address = address});
    estimate += kLocalRecipientOverhead + address.size();
  }
  const std::vector<uint8_t> bytes = encode_payload(job);
  EXPECT_LE(bytes.size(), estimate);
  EXPECT_LT(kLocalJobBytes, ipc::kMaxPayload);
  EXPECT_TRUE(decode_payload<DeliverLocal>(bytes).has_value());
}

TEST(Messages, LookupQuestionsRoundTrip) {
  lookup::Settings config;
  config.trusted_networks = {*inet::parse_network("127.0.0.0/8"),
                             *inet::parse_network("2001:db8::/32")};
  config.dns = {.resolvers = {"127.0.0.1@5353", "::1"}, .timeout = 3};
  config.checks.push_back(
      {"mx", lookup::ClientChecks{
                 .fcrdns = lookup::CheckAction::tag,
                 .dnsbl = lookup::CheckAction::refuse,
                 .threshold = 2,
                 .zones = {{"a.example", {"127.0.0.2", "127.0.0.4"}, 2}, {"b.example", {}, 1}}}});
  config.connection_rate = 42;
  config.domains.push_back({.name = "staff.example", .system_users = true, .min_uid = 2000});
  config.daemon_users = {"_smtpd", "_smtpq"};
  config.daemon_uids = {101, 102};
  const lookup::Settings back = round_trip(config);
  EXPECT_EQ(back.connection_rate, 42u);
  EXPECT_EQ(back.domains, config.domains);
  EXPECT_EQ(back.daemon_users, config.daemon_users);
  EXPECT_EQ(back.daemon_uids, config.daemon_uids);
  EXPECT_EQ(back.trusted_networks, config.trusted_networks);
  EXPECT_EQ(back.dns, config.dns);
  EXPECT_EQ(back.checks, config.checks);

  const ClientVerdict verdict = round_trip(ClientVerdict{.refuse = true,
                                                         .reply = "554 5.7.1 listed",
                                                         .verified_name = "mail.example",
                                                         .header = "dnsbl=2/2",
                                                         .delay_ms = 2500});
  EXPECT_TRUE(verdict.refuse);
  EXPECT_EQ(verdict.reply, "554 5.7.1 listed");
  EXPECT_EQ(verdict.verified_name, "mail.example");
  EXPECT_EQ(verdict.header, "dnsbl=2/2");
  EXPECT_EQ(verdict.delay_ms, 2500u);

  const MxAnswer mx = round_trip(MxAnswer{
      .status = MxStatus::ok,
      .implicit = false,
      .hosts = {{10, "a.example", {"2001:db8::1", "192.0.2.1"}}, {20, "b.example", {"192.0.2.2"}}},
      .error = ""});
  EXPECT_EQ(mx.status, MxStatus::ok);
  ASSERT_EQ(mx.hosts.size(), 2u);
  EXPECT_EQ(mx.hosts[0], (MxHost{10, "a.example", {"2001:db8::1", "192.0.2.1"}}));
  EXPECT_EQ(round_trip(ClientCheck{.listener = "mx", .address = "192.0.2.9"}).address, "192.0.2.9");
  EXPECT_EQ(round_trip(CtlUpdateTable{.name = "/etc/postern/users"}).name, "/etc/postern/users");
  const TableLoaded loaded = round_trip(TableLoaded{.ok = false, .error = "users:2: bad"});
  EXPECT_FALSE(loaded.ok);
  EXPECT_EQ(loaded.error, "users:2: bad");

  // A network that is not one never decodes.
  auto settings_with_network = [](const std::string& network) {
    wire::Writer w;
    w.count(0);  // domains
    w.count(0);  // relay_domains
    w.count(1);  // trusted_networks
    w.str(network);
    w.boolean(false);  // trusted_networks_relay
    w.boolean(false);  // senders
    w.u32(0);          // sender_rule
    w.count(0);        // dns.resolvers
    w.u32(5);    // dns.timeout
    w.u32(60);   // connection_rate
    w.count(0);  // checks
    w.count(0);  // daemon_users
    w.count(0);  // daemon_uids
    return w.take();
  };
  EXPECT_TRUE(decode_payload<lookup::Settings>(settings_with_network("192.0.2.0/24")));
  EXPECT_FALSE(decode_payload<lookup::Settings>(settings_with_network("192.0.2.1/24")));
}

TEST(Messages, TruncatedOrPaddedPayloadsAreRefused) {
  expect_strict(
      Start{.drop_privileges = true, .uid = 1, .gid = 2, .chroot_dir = "/x", .verbose = false});
  expect_strict(PeerChannel{.peer = Role::queue});
  expect_strict(PeerFault{.peer = Role::queue, .reason = "r"});
  expect_strict(sample_status_reply());
  expect_strict(SetVerbose{.verbose = true});
  expect_strict(smtp::Settings{.hostname = "h"});
  expect_strict(queue::Settings{.spool_dir = "/spool"});
  expect_strict(ListenerAdd{
      .id = 1, .name = "n", .role = config::ListenerRole::smtps, .address = "127.0.0.1:465"});
  expect_strict(ListenerRemove{.id = 1});
  expect_strict(CtlSetVerbose{.verbose = true});
  expect_strict(sample_ctl_status());
  expect_strict(CtlResult{.ok = true, .text = "t"});
  // Empty messages take no byte at all.
  expect_strict(Ready{});
  expect_strict(CtlStop{});
}

TEST(Messages, ValuesOutsideTheirRangeAreRefused) {
  // A role number past the last role.
  wire::Writer w;
  w.u32(kRoleCount);
  EXPECT_FALSE(decode_payload<PeerChannel>(w.bytes()).has_value());
  // Dropping "privileges" to root is no drop.
  EXPECT_FALSE(
      decode_payload<Start>(
          encode_payload(Start{
              .drop_privileges = true, .uid = 0, .gid = 5, .chroot_dir = "", .verbose = false}))
          .has_value());
  EXPECT_FALSE(
      decode_payload<queue::Settings>(encode_payload(queue::Settings{.spool_dir = "relative"}))
          .has_value());
  // A listener role past the last one.
  wire::Writer l;
  l.u32(1);
  l.str("n");
  l.u32(config::kListenerRoleCount);
  l.str("127.0.0.1:25");
  EXPECT_FALSE(decode_payload<ListenerAdd>(l.bytes()).has_value());
  // A counter list claiming more entries than allowed.
  wire::Writer c;
  c.i64(0);
  c.u32(kMaxCounters + 1);
  EXPECT_FALSE(decode_payload<StatusReply>(c.bytes()).has_value());
}

Envelope sample_envelope() {
  Envelope e;
  e.id = "0123456789abcdef";
  e.arrival = 1790000000;
  e.sender = "alice@example.org";
  e.helo = "client.example";
  e.client_address = "192.0.2.7";
  e.client_name = "client.example";
  e.listener = "mx";
  e.auth_user = "alice";
  e.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
  e.smtputf8 = true;
  e.body_8bit = true;
  e.ret = DsnRet::headers;
  e.envid = "QQ314159";
  e.size = 12345;
  return e;
}

TEST(Messages, ReceivingMailRoundTrips) {
  smtp::Settings config{.hostname = "mx.example", .limits = {}};
  config.limits.message_size = 1 << 20;
  config.limits.data_timeout = 7;
  smtp::Settings config2 = round_trip(config);
  EXPECT_EQ(config2.limits, config.limits);
  const std::vector<lookup::Domain> domains{
      {"a.example", std::nullopt}, {"b.example", std::vector<std::string>{"alice", "bob"}}};
  EXPECT_EQ(round_trip(lookup::Settings{.domains = domains}).domains, domains);
  expect_strict(lookup::Settings{.domains = domains});
  RcptCheck check = round_trip(RcptCheck{
      .local_part = "bob", .domain = "b.example", .literal = false, .authenticated = true});
  EXPECT_EQ(check.local_part, "bob");
  EXPECT_TRUE(check.authenticated);
  EXPECT_EQ(round_trip(RcptVerdict{.decision = RcptDecision::unknown_user}).decision,
            RcptDecision::unknown_user);
  EXPECT_EQ(round_trip(MessageOpened{.id = "fedcba9876543210"}).id, "fedcba9876543210");
  MessageRecipients rcpts{.id = "0123456789abcdef", .recipients = {}};
  rcpts.recipients.push_back(
      {.address = "bob@b.example",
       .orcpt_type = "rfc822",
       .orcpt = "bob@b.example",
       .notify = {.never = false, .success = true, .failure = true, .delay = false},
       .state = RecipientState::pending});
  EXPECT_EQ(round_trip(rcpts).recipients, rcpts.recipients);
  MessageCommit commit =
      round_trip(MessageCommit{.envelope = sample_envelope(), .recipient_count = 3});
  EXPECT_EQ(commit.envelope, sample_envelope());
  EXPECT_EQ(commit.recipient_count, 3u);
  EXPECT_EQ(
      round_trip(MessageCommit{.envelope = sample_envelope(), .recipient_count = 1, .session = 42})
          .session,
      42u);
  const SessionOpen opened = round_trip(SessionOpen{.session = 7, .listener = "submission"});
  EXPECT_EQ(opened.session, 7u);
  EXPECT_EQ(opened.listener, "submission");
  EXPECT_FALSE(decode_payload<SessionOpen>(encode_payload(SessionOpen{.session = 0})));
  const RelayCheck relay = round_trip(RelayCheck{.session = 7,
                                                 .client_address = "192.0.2.1",
                                                 .listener = "smtp",
                                                 .auth_user = "alice",
                                                 .sender = "alice@example.org",
                                                 .domains = {"a.example", "b.example"}});
  EXPECT_EQ(relay.session, 7u);
  EXPECT_EQ(relay.auth_user, "alice");
  EXPECT_EQ(relay.sender, "alice@example.org");
  EXPECT_EQ(relay.domains, (std::vector<std::string>{"a.example", "b.example"}));
  const SenderCheck sender = round_trip(SenderCheck{.session = 9, .sender = "a@b.example"});
  EXPECT_EQ(sender.session, 9u);
  EXPECT_EQ(sender.sender, "a@b.example");
  const RelayVerdict verdict =
      round_trip(RelayVerdict{.allowed = false, .temporary = true, .reason = "forgotten"});
  EXPECT_TRUE(verdict.temporary);
  EXPECT_EQ(verdict.reason, "forgotten");
  expect_strict(relay);
  MessageResult result = round_trip(
      MessageResult{.id = "", .outcome = MessageOutcome::temporary_failure, .reason = "disk full"});
  EXPECT_EQ(result.outcome, MessageOutcome::temporary_failure);
  EXPECT_EQ(round_trip(MessageAbort{.id = "0123456789abcdef"}).id, "0123456789abcdef");
  const DeliveryReport report{.id = "0123456789abcdef",
                              .results = {{.index = 0,
                                           .outcome = DeliveryOutcome::delivered,
                                           .dsn = "2.0.0",
                                           .detail = "delivered to maildir",
                                           .forward = {"friend@remote.example"},
                                           .expanded = true},
                                          {.index = 1,
                                           .outcome = DeliveryOutcome::temporary_failure,
                                           .dsn = "4.3.0",
                                           .detail = "disk full",
                                           .forward = {},
                                           .expanded = false}}};
  EXPECT_EQ(round_trip(report).results, report.results);
  EXPECT_TRUE(round_trip(report).last);
  DeliveryReport part = report;
  part.last = false;
  EXPECT_FALSE(round_trip(part).last);

  expect_strict(config);
  expect_strict(report);
  expect_strict(rcpts);
  expect_strict(MessageCommit{.envelope = sample_envelope(), .recipient_count = 1});
}

TEST(Messages, BadQueueIdsAndRecipientsAreRefused) {
  for (const char* id :
       {"", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdefa", "../../etc/passwd"}) {
    EXPECT_FALSE(decode_payload<MessageAbort>(encode_payload(MessageAbort{.id = id})).has_value())
        << id;
  }
  MessageRecipients empty_address{.id = "0123456789abcdef", .recipients = {Recipient{}}};
  EXPECT_FALSE(decode_payload<MessageRecipients>(encode_payload(empty_address)).has_value());
  MessageRecipients never_and_success{.id = "0123456789abcdef", .recipients = {}};
  never_and_success.recipients.push_back(
      {.address = "a@b",
       .orcpt_type = "",
       .orcpt = "",
       .notify = {.never = true, .success = true, .failure = false, .delay = false},
       .state = RecipientState::pending});
  EXPECT_FALSE(decode_payload<MessageRecipients>(encode_payload(never_and_success)).has_value());
  MessageRecipients too_many{.id = "0123456789abcdef", .recipients = {}};
  too_many.recipients.resize(kRecipientsPerBatch + 1, Recipient{.address = "a@b"});
  EXPECT_FALSE(decode_payload<MessageRecipients>(encode_payload(too_many)).has_value());
  EXPECT_FALSE(
      decode_payload<MessageCommit>(
          encode_payload(MessageCommit{.envelope = sample_envelope(), .recipient_count = 0}))
          .has_value());
}

// A value of T that passes its table's bounds and checks: every string 16 'a' (a valid queue
// id, and a valid value wherever a string must not be empty), numbers at least their minimum,
// nested structs filled the same way (an envelope: the sample), lists empty.
template <typename T>
void fill(T& value) {
  fields::for_each_field<T>([&](const auto& field) {
    auto& member = value.*field.member;
    using Member = std::decay_t<decltype(member)>;
    if constexpr (std::is_same_v<Member, std::string>) {
      member = std::string(kQueueIdLength, 'a');
    } else if constexpr (std::is_integral_v<Member> && std::is_unsigned_v<Member> &&
                         !std::is_same_v<Member, bool>) {
      if (member < field.bounds.min) member = static_cast<Member>(field.bounds.min);
    } else if constexpr (fields::Described<Member>) {
      fill(member);
    } else if constexpr (std::is_same_v<Member, Envelope>) {
      member = sample_envelope();
    }
  });
  if constexpr (std::is_same_v<T, queue::Settings>) {  // valid(): a path, retries in order
    value.spool_dir = "/spool";
    value.retry_max = 7 * 86400;
  }
  if constexpr (std::is_same_v<T, DeliverRemote>) {  // valid(): at least one recipient
    value.recipients.resize(1);
    fill(value.recipients.front());
  }
}

template <typename Item>
Item filled_item() {
  Item item{};
  if constexpr (std::is_same_v<Item, std::string>) {
    item = std::string(kQueueIdLength, 'a');
  } else if constexpr (fields::Described<Item>) {
    fill(item);
  } else if constexpr (std::is_same_v<Item, Recipient>) {
    item.address = "a@b";
  } else if constexpr (std::is_same_v<Item, inet::Network>) {
    item = *inet::parse_network("192.0.2.0/24");
  }
  return item;
}

// True when value decodes from its encoding, and to a value with that same encoding.
template <typename T>
bool decodes(const T& value) {
  wire::Writer w;
  wire::encode_fields(w, value);
  const std::vector<uint8_t> bytes = w.take();
  wire::Reader r(bytes);
  const T back = wire::decode_fields<T>(r);
  if (!r.finish()) return false;
  wire::Writer again;
  wire::encode_fields(again, back);
  return again.bytes() == bytes;
}

// Each string, list and bounded number of T: at its bound it decodes, one past it is refused.
template <typename T>
void expect_bounds_hold(std::string_view name) {
  T base{};
  fill(base);
  ASSERT_TRUE(decodes(base)) << name;
  fields::for_each_field<T>([&](const auto& field) {
    using Member = std::decay_t<decltype(base.*field.member)>;
    const std::string what = std::string(name) + "." + std::string(field.name);
    T value = base;
    auto& member = value.*field.member;
    if constexpr (std::is_same_v<Member, std::string>) {
      ASSERT_NE(field.bounds.length, 0u) << what << " has no bound of its own";
      const bool absolute = !member.empty() && member.front() == '/';  // a path stays one
      member = std::string(field.bounds.length, 'a');
      if (absolute) member.front() = '/';
      EXPECT_TRUE(decodes(value)) << what;
      member.push_back('a');
      EXPECT_FALSE(decodes(value)) << what;
    } else if constexpr (fields::IsVector<Member>::value) {
      member.assign(field.bounds.count, filled_item<typename Member::value_type>());
      EXPECT_TRUE(decodes(value)) << what;
      member.push_back(filled_item<typename Member::value_type>());
      EXPECT_FALSE(decodes(value)) << what;
    } else if constexpr (std::is_integral_v<Member> && std::is_unsigned_v<Member> &&
                         !std::is_same_v<Member, bool>) {
      if (field.bounds.max < std::numeric_limits<Member>::max()) {
        member = static_cast<Member>(field.bounds.max);
        EXPECT_TRUE(decodes(value)) << what;
        ++member;
        EXPECT_FALSE(decodes(value)) << what;
      }
      if (field.bounds.min > 0) {
        member = static_cast<Member>(field.bounds.min - 1);
        EXPECT_FALSE(decodes(value)) << what;
      }
    }
  });
}

template <typename... M>
void expect_all_bounds_hold(std::tuple<M...>*) {
  (
      [] {
        if constexpr (fields::Described<M>) expect_bounds_hold<M>(M::kInfo.name);
      }(),
      ...);
}

TEST(Messages, EveryBoundHoldsAtItsLimit) {
  expect_all_bounds_hold(static_cast<AllMessages*>(nullptr));
  expect_bounds_hold<ProcessStatus>("ProcessStatus");
  expect_bounds_hold<MxHost>("MxHost");
  expect_bounds_hold<LocalRecipient>("LocalRecipient");
  expect_bounds_hold<DeliveryResult>("DeliveryResult");
  expect_bounds_hold<Destination>("Destination");
  expect_bounds_hold<LocalRoute>("LocalRoute");
  // The envelope's own bounds (RFC 3461's ORCPT and ENVID) travel in a view of its fields.
  MessageRecipients rcpts{.id = "0123456789abcdef", .recipients = {Recipient{.address = "a@b"}}};
  rcpts.recipients[0].orcpt = std::string(mail::kMaxOrcptAddress, 'o');
  EXPECT_TRUE(decode_payload<MessageRecipients>(encode_payload(rcpts)).has_value());
  rcpts.recipients[0].orcpt.push_back('o');
  EXPECT_FALSE(decode_payload<MessageRecipients>(encode_payload(rcpts)).has_value());
  MessageCommit commit{.envelope = sample_envelope(), .recipient_count = 1};
  commit.envelope.envid = std::string(mail::kMaxEnvid, 'e');
  EXPECT_TRUE(decode_payload<MessageCommit>(encode_payload(commit)).has_value());
  commit.envelope.envid.push_back('e');
  EXPECT_FALSE(decode_payload<MessageCommit>(encode_payload(commit)).has_value());
}

TEST(Messages, SchemaTableIsConsistent) {
  std::set<uint16_t> types;
  std::set<std::string_view> names;
  for (const MessageInfo& info : all_message_info()) {
    EXPECT_TRUE(types.insert(static_cast<uint16_t>(info.type)).second) << info.name;
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
    EXPECT_NE(info.senders, 0u) << info.name;
    EXPECT_NE(info.receivers, 0u) << info.name;
    EXPECT_EQ(message_info(static_cast<uint16_t>(info.type)), &info);
  }
  // Numbered 1..N without gaps but the retired numbers, every one in AllMessages.
  for (Type retired : kRetiredTypes) {
    EXPECT_EQ(message_info(static_cast<uint16_t>(retired)), nullptr);
    EXPECT_TRUE(types.insert(static_cast<uint16_t>(retired)).second);
  }
  EXPECT_EQ(types.size(), std::tuple_size_v<AllMessages> + std::size(kRetiredTypes));
  // Each payload, wherever it is declared, carries its schema row: one payload per row.
  std::set<uint16_t> declared;
  std::apply(
      [&](auto... m) {
        (
            [&](const MessageInfo& info) {
              EXPECT_TRUE(declared.insert(static_cast<uint16_t>(info.type)).second) << info.name;
              const MessageInfo* row = message_info(static_cast<uint16_t>(info.type));
              ASSERT_NE(row, nullptr) << info.name;
              EXPECT_EQ(row->name, info.name);
              EXPECT_EQ(row->senders, info.senders) << info.name;
              EXPECT_EQ(row->receivers, info.receivers) << info.name;
              EXPECT_EQ(row->fd, info.fd) << info.name;
            }(decltype(m)::kInfo),
            ...);
      },
      AllMessages{});
  EXPECT_EQ(declared.size(), all_message_info().size());
  EXPECT_EQ(*types.rbegin(), types.size());
  EXPECT_EQ(message_info(0), nullptr);
  EXPECT_EQ(message_info(0xffff), nullptr);
}

ipc::Frame raw_frame(uint16_t type, std::vector<uint8_t> payload, UniqueFd fd = {}) {
  ipc::Frame f;
  f.type = type;
  f.request_id = 42;
  f.pid = 99;
  f.payload = std::move(payload);
  f.fd = std::move(fd);
  return f;
}

template <typename M>
ipc::Frame frame_of(const M& m, UniqueFd fd = {}) {
  return raw_frame(static_cast<uint16_t>(M::kInfo.type), encode_payload(m), std::move(fd));
}

UniqueFd some_fd() {
  return UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
}

TEST(Dispatcher, DeliversAcceptedFramesWithTheirDescriptor) {
  Dispatcher d(Role::smtp);
  int calls = 0;
  d.on<ListenerAdd>([&](Incoming& in, ListenerAdd&& m) {
    ++calls;
    EXPECT_EQ(in.from, Role::parent);
    EXPECT_EQ(in.request_id, 42u);
    EXPECT_EQ(in.pid, 99u);
    EXPECT_TRUE(in.fd.valid());
    EXPECT_EQ(m.name, "mx");
  });
  const Status st = d.dispatch(
      Role::parent,
      frame_of(
          ListenerAdd{
              .id = 1, .name = "mx", .role = config::ListenerRole::smtp, .address = "127.0.0.1:25"},
          some_fd()));
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(calls, 1);
}

TEST(Dispatcher, RefusesWhatTheSchemaDoesNotAllow) {
  Dispatcher d(Role::smtp);
  int calls = 0;
  d.on<ListenerAdd>([&](Incoming&, ListenerAdd&&) { ++calls; });
  d.on<PeerHello>([&](Incoming&, PeerHello&&) { ++calls; });
  const ListenerAdd add{
      .id = 1, .name = "mx", .role = config::ListenerRole::smtp, .address = "127.0.0.1:25"};

  auto expect_refused = [&](Role from, ipc::Frame f, const std::string& why) {
    const Status st = d.dispatch(from, std::move(f));
    ASSERT_FALSE(st.ok()) << why;
    EXPECT_NE(st.error().message.find(why), std::string::npos) << st.error().message;
  };
  expect_refused(Role::parent, raw_frame(999, {}), "unknown message type 999");
  expect_refused(Role::queue, frame_of(add, some_fd()), "queue may not send listener_add");
  expect_refused(Role::parent, frame_of(add), "lacks its descriptor");
  expect_refused(Role::queue, frame_of(PeerHello{}, some_fd()), "carries a descriptor");
  expect_refused(Role::parent, frame_of(queue::Settings{.spool_dir = "/"}),
                 "queue_config is not for smtp");
  expect_refused(Role::parent, frame_of(smtp::Settings{.hostname = "h"}), "not handled here");
  std::vector<uint8_t> garbage = encode_payload(add);
  garbage.push_back(1);
  expect_refused(Role::parent,
                 raw_frame(static_cast<uint16_t>(Type::listener_add), garbage, some_fd()),
                 "malformed listener_add payload");
  expect_refused(Role::client, frame_of(PeerHello{}), "client may not send peer_hello");
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace postern::msg
