// Tests for mta/source.cpp: which configured list of source addresses applies (route, shaping
// rule, relay_source) and its address of the server's family. The real mta binding them is
// tested in mta_process_test.cpp (EachDestinationLeavesFromItsSourceAddress...).
#include "mta/source.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::mta {
namespace {

TEST(Source, TheMostSpecificListAppliesWhole) {
  Settings settings;
  settings.relay_source = {"192.0.2.7", "2001:db8::7"};
  const Shaping rule{.match = {"a.test"}, .source = {"198.51.100.1"}};
  const Shaping bare{.match = {"b.test"}};
  const std::vector<std::string> route = {"203.0.113.5"};
  EXPECT_EQ(applicable_sources(route, &rule, settings), route);
  EXPECT_EQ(applicable_sources({}, &rule, settings), rule.source);
  EXPECT_EQ(applicable_sources({}, &bare, settings), settings.relay_source);
  EXPECT_EQ(applicable_sources({}, nullptr, settings), settings.relay_source);
  // The rule has no IPv6 address: an IPv6 server is connected to unbound, not from relay_source.
  const auto& sources = applicable_sources({}, &rule, settings);
  EXPECT_EQ(source_for(sources, "192.0.2.25"), "198.51.100.1");
  EXPECT_EQ(source_for(sources, "2001:db8::25"), "");
  EXPECT_EQ(source_for(settings.relay_source, "2001:db8::25"), "2001:db8::7");
  EXPECT_EQ(source_for(settings.relay_source, "192.0.2.25"), "192.0.2.7");
  EXPECT_EQ(source_for(settings.relay_source, "mx.example.org"), "");
  EXPECT_EQ(source_for({}, "192.0.2.25"), "");
}

}  // namespace
}  // namespace postern::mta
