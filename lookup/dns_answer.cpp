// DNS answers and names, apart from any resolver: a wire answer (as libunbound hands it over)
// read with ldns, never by hand, and the reverse names PTR and DNSBL questions are asked
// about. Pure functions, unit-tested and fuzzed (tests/fuzz/dns_fuzz.cpp).

// dns.hpp first: included after ldns's C headers, <optional> does not compile.
#include "lookup/dns.hpp"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "common/util/inet.hpp"

namespace postern::lookup::dns {
namespace {

// A longer chain is a loop or an attack; libunbound itself stops at 11 (max-query-restarts).
constexpr int kMaxCnameChain = 8;

struct PktDeleter {
  void operator()(ldns_pkt* pkt) const { ldns_pkt_free(pkt); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktDeleter>;

// ldns hands out text it allocated with malloc.
struct MallocDeleter {
  void operator()(char* text) const {
    free(text);  // NOLINT(cppcoreguidelines-no-malloc,cppcoreguidelines-owning-memory)
  }
};

// Presentation format from ldns (escapes for odd bytes), lower-case, without the final dot.
std::string name_text(const ldns_rdf* name) {
  const std::unique_ptr<char, MallocDeleter> text(ldns_rdf2str(name));
  if (!text) return {};
  std::string out(text.get());
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Written as the record holds it: an AAAA record of ::ffff:a.b.c.d stays IPv6.
std::string address_of(const ldns_rdf* rdf, int family) {
  const size_t size = family == AF_INET ? 4 : 16;
  if (ldns_rdf_size(rdf) != size) return {};
  sockaddr_storage address{};
  address.ss_family = static_cast<sa_family_t>(family);
  auto* raw = reinterpret_cast<uint8_t*>(&address);
  std::copy_n(ldns_rdf_data(rdf), size,
              raw + (family == AF_INET ? offsetof(sockaddr_in, sin_addr)
                                       : offsetof(sockaddr_in6, sin6_addr)));
  return inet::address_text(reinterpret_cast<const sockaddr*>(&address), inet::Mapped::as_ipv6);
}

// The record's data as Record, or nothing if it is malformed for its type.
std::optional<Record> record_of(const ldns_rr* rr, RecordType type) {
  Record record;
  switch (type) {
    case RecordType::a:
    case RecordType::aaaa: {
      if (ldns_rr_rd_count(rr) != 1) return std::nullopt;
      record.value = address_of(ldns_rr_rdf(rr, 0), type == RecordType::a ? AF_INET : AF_INET6);
      if (record.value.empty()) return std::nullopt;
      return record;
    }
    case RecordType::ptr: {
      if (ldns_rr_rd_count(rr) != 1 || ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) != LDNS_RDF_TYPE_DNAME)
        return std::nullopt;
      record.value = name_text(ldns_rr_rdf(rr, 0));
      if (record.value.empty()) return std::nullopt;  // a PTR to the root names nothing
      return record;
    }
    case RecordType::mx: {
      if (ldns_rr_rd_count(rr) != 2) return std::nullopt;
      const ldns_rdf* preference = ldns_rr_rdf(rr, 0);
      const ldns_rdf* exchange = ldns_rr_rdf(rr, 1);
      if (ldns_rdf_get_type(preference) != LDNS_RDF_TYPE_INT16 || ldns_rdf_size(preference) != 2 ||
          ldns_rdf_get_type(exchange) != LDNS_RDF_TYPE_DNAME)
        return std::nullopt;
      record.preference = ldns_rdf2native_int16(preference);
      record.value = name_text(exchange);
      return record;
    }
  }
  return std::nullopt;
}

// The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d), if it is one.
std::optional<in_addr> mapped_ipv4(const sockaddr_in6& address) {
  if (!IN6_IS_ADDR_V4MAPPED(&address.sin6_addr)) return std::nullopt;
  in_addr out{};
  std::copy_n(address.sin6_addr.s6_addr + 12, 4, reinterpret_cast<uint8_t*>(&out));
  return out;
}

std::string reverse_ipv4(const in_addr& address) {
  const auto* octets = reinterpret_cast<const uint8_t*>(&address);
  std::string out;
  for (int i = 3; i >= 0; --i) {
    out += std::to_string(octets[i]);
    if (i > 0) out += '.';
  }
  return out;
}

}  // namespace

Answer Answer::failure(Status status, std::string error) {
  Answer answer;
  answer.status = status;
  answer.error = std::move(error);
  return answer;
}

const char* to_string(Status status) {
  switch (status) {
    case Status::ok:
      return "ok";
    case Status::no_name:
      return "no such domain";
    case Status::no_data:
      return "no record of that type";
    case Status::temporary:
      return "temporary failure";
    case Status::bogus:
      return "DNSSEC validation failed";
  }
  return "unknown";
}

Answer parse_answer(std::span<const uint8_t> packet, RecordType type) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, packet.data(), packet.size()) != LDNS_STATUS_OK || !raw)
    return Answer::failure(Status::temporary, "malformed DNS answer");
  const PktPtr pkt(raw);

  const ldns_pkt_rcode rcode = ldns_pkt_get_rcode(pkt.get());
  if (rcode == LDNS_RCODE_NXDOMAIN) return Answer::failure(Status::no_name, "no such domain");
  if (rcode != LDNS_RCODE_NOERROR) {
    const ldns_lookup_table* known = ldns_lookup_by_id(ldns_rcodes, static_cast<int>(rcode));
    return Answer::failure(Status::temporary,
                           std::string("DNS server answered ") +
                               (known ? known->name : std::to_string(rcode).c_str()));
  }
  const ldns_rr_list* question = ldns_pkt_question(pkt.get());
  if (ldns_rr_list_rr_count(question) != 1)
    return Answer::failure(Status::temporary, "DNS answer without exactly one question");
  const ldns_rr* asked = ldns_rr_list_rr(question, 0);
  if (ldns_rr_get_type(asked) != static_cast<ldns_rr_type>(type) ||
      ldns_rr_get_class(asked) != LDNS_RR_CLASS_IN)
    return Answer::failure(Status::temporary, "DNS answer to another question");

  // RFC 1034 3.6.2: the answer may hold a CNAME chain from the question's name to the name
  // owning the records, in any order. ldns_dname_compare ignores case.
  const ldns_rr_list* section = ldns_pkt_answer(pkt.get());
  const size_t count = ldns_rr_list_rr_count(section);
  const ldns_rdf* owner = ldns_rr_owner(asked);
  for (int links = 0;; ++links) {
    const ldns_rdf* target = nullptr;
    for (size_t i = 0; i < count && !target; ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(section, i);
      if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN &&
          ldns_rr_rd_count(rr) == 1 && ldns_dname_compare(ldns_rr_owner(rr), owner) == 0 &&
          ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) == LDNS_RDF_TYPE_DNAME)
        target = ldns_rr_rdf(rr, 0);
    }
    if (!target) break;
    if (links == kMaxCnameChain) return Answer::failure(Status::temporary, "CNAME chain too long");
    owner = target;
  }

  Answer answer;
  answer.canonical_name = name_text(owner);
  for (size_t i = 0; i < count; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(section, i);
    if (ldns_rr_get_type(rr) != static_cast<ldns_rr_type>(type) ||
        ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
        ldns_dname_compare(ldns_rr_owner(rr), owner) != 0)
      continue;
    if (auto record = record_of(rr, type)) answer.records.push_back(std::move(*record));
  }
  if (answer.records.empty()) {
    answer.status = Status::no_data;
    answer.error = "no record of that type";
  } else {
    answer.status = Status::ok;
  }
  return answer;
}

std::string reverse_name(const sockaddr* address) {
  if (!address) return {};
  if (address->sa_family == AF_INET)
    return reverse_ipv4(reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
  if (address->sa_family != AF_INET6) return {};
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
  if (const auto v4 = mapped_ipv4(*in6)) return reverse_ipv4(*v4);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(63);
  for (int i = 15; i >= 0; --i) {
    const uint8_t byte = in6->sin6_addr.s6_addr[i];
    out += kHex[byte & 0xf];
    out += '.';
    out += kHex[byte >> 4];
    if (i > 0) out += '.';
  }
  return out;
}

std::string ptr_name(const sockaddr* address) {
  std::string reversed = reverse_name(address);
  if (reversed.empty()) return {};
  const bool ipv4 = reversed.size() < 63;  // 32 nibbles and 31 dots otherwise
  return reversed + (ipv4 ? ".in-addr.arpa" : ".ip6.arpa");
}

}  // namespace postern::lookup::dns
