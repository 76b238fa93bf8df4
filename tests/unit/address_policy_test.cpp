// core/address_policy: contract §10's closed ranges, the operator's allow and deny lists, the service's
// own addresses, and every spelling of an address a resolver would accept.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/address_policy.hpp"

namespace {

using namespace membraned::core;

IpAddress ip(const char* text) {
  auto parsed = IpAddress::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(IpAddress{});
}

Cidr cidr(const char* text) {
  auto parsed = Cidr::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed ? *parsed : Cidr{};
}

TEST(IpAddress, ParsesBothFamiliesAndRefusesTheRest) {
  EXPECT_EQ(ip("10.1.2.3").to_string(), "10.1.2.3");
  EXPECT_EQ(ip("[::1]").to_string(), "::1");
  EXPECT_EQ(ip("FE80::1").to_string(), "fe80::1");
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "example.com", "fe80::1%eth0", "[::1", "::g"}) {
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
  }
}

TEST(IpAddress, NumericSpellingsAreReadAsInetAtonReadsThem) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"2130706433", "127.0.0.1"},   {"0177.0.0.1", "127.0.0.1"},        {"0x7f.1", "127.0.0.1"},
      {"127.1", "127.0.0.1"},        {"0x7f000001", "127.0.0.1"},        {"169.254.43518", "169.254.169.254"},
      {"0xA9FEA9FE", "169.254.169.254"}, {"2852039166", "169.254.169.254"}, {"0", "0.0.0.0"},
      {"017700000001", "127.0.0.1"}, {"1.2.3.4", "1.2.3.4"}};
  for (const auto& [spelling, address] : cases) {
    auto parsed = IpAddress::parse_numeric_ipv4(spelling);
    ASSERT_TRUE(parsed) << spelling;
    EXPECT_EQ(parsed->to_string(), address) << spelling;
  }
  for (const char* not_numeric : {"", "1.", ".1", "1..2", "08.0.0.1", "0x", "1.2.3.4.5", "4294967296", "256.0.0.1",
                                  "1.2.65536", "example.com", "1e3", "-1", "0x1g"}) {
    EXPECT_FALSE(IpAddress::parse_numeric_ipv4(not_numeric)) << not_numeric;
  }
}

// Found by fuzzing (tests/fuzz/regressions/upstream_uri): getaddrinfo reads a spelling of any
// length, leading zeros and all, and so must the check made before DNS.
TEST(IpAddress, LongNumericSpellingsAreReadToo) {
  const std::string zeros(100, '0');
  EXPECT_EQ(IpAddress::parse_numeric_ipv4("0x" + zeros + "7f000001")->to_string(), "127.0.0.1");
  EXPECT_EQ(IpAddress::parse_numeric_ipv4(zeros + "177.0.0.1")->to_string(), "127.0.0.1");
  EXPECT_EQ(IpAddress::parse_numeric_ipv4("0x" + zeros)->to_string(), "0.0.0.0");
  EXPECT_TRUE(address_without_dns(zeros + "177.1")->is_loopback());
}

TEST(IpAddress, Ipv6WrappingsOfIpv4AreSeenThrough) {
  EXPECT_EQ(ip("::ffff:169.254.169.254").embedded_ipv4().to_string(), "169.254.169.254");
  EXPECT_EQ(ip("::ffff:7f00:1").embedded_ipv4().to_string(), "127.0.0.1");
  EXPECT_EQ(ip("::127.0.0.1").embedded_ipv4().to_string(), "127.0.0.1");
  EXPECT_EQ(ip("64:ff9b::a9fe:a9fe").embedded_ipv4().to_string(), "169.254.169.254");
  EXPECT_EQ(ip("::1").embedded_ipv4().to_string(), "::1");  // loopback itself, not 0.0.0.1
  EXPECT_EQ(ip("2001:db8::1").embedded_ipv4().to_string(), "2001:db8::1");
}

TEST(IpAddress, LoopbackIsTheV4RangeV6OneAndTheirMappedForm) {
  for (const char* yes : {"127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"}) EXPECT_TRUE(ip(yes).is_loopback()) << yes;
  for (const char* no : {"128.0.0.1", "::2", "::", "::ffff:10.0.0.1", "fe80::1", "0.0.0.0"}) EXPECT_FALSE(ip(no).is_loopback()) << no;
  EXPECT_TRUE(address_without_dns("api.localhost")->is_loopback());
  EXPECT_TRUE(address_without_dns("0x7f.1")->is_loopback());
  EXPECT_FALSE(address_without_dns("example.com").has_value());
}

TEST(Cidr, ParsesMasksAndContains) {
  EXPECT_EQ(cidr("10.9.8.7/8").to_string(), "10.0.0.0/8");
  EXPECT_EQ(cidr("192.0.2.5").to_string(), "192.0.2.5/32");
  EXPECT_EQ(cidr("fd00::1/8").to_string(), "fd00::/8");
  EXPECT_TRUE(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
  EXPECT_FALSE(cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
  EXPECT_TRUE(cidr("172.16.0.0/12").contains(ip("172.31.255.255")));
  EXPECT_FALSE(cidr("172.16.0.0/12").contains(ip("172.32.0.0")));
  EXPECT_FALSE(cidr("0.0.0.0/0").contains(ip("::1")));  // families never mix
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "/8", "example.com/8", "10.0.0.0/-1"}) {
    auto parsed = Cidr::parse(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_NE(parsed.error().message.find(bad), std::string::npos);
  }
}

TEST(UpstreamAddressPolicy, ClosesLoopbackLinkLocalUnspecifiedAndMulticastByDefault) {
  UpstreamAddressPolicy policy;
  for (const char* closed : {"127.0.0.1", "127.255.255.254", "::1", "169.254.169.254", "fe80::1", "febf::1",
                             "0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "ff02::1", "255.255.255.255",
                             "::ffff:169.254.169.254", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "::127.0.0.1"}) {
    auto verdict = policy.check(ip(closed));
    ASSERT_FALSE(verdict) << closed;
    EXPECT_EQ(verdict.error().field, "uri");
    EXPECT_NE(verdict.error().message.find("--allow-upstream"), std::string::npos) << verdict.error().message;
  }
  // Private ranges stay open (VPC endpoints live there), and so does the public internet.
  for (const char* open : {"10.0.0.1", "172.16.0.1", "192.168.1.1", "fd00::1", "8.8.8.8", "2001:4860::8888",
                           "fec0::1", "169.253.255.255", "169.255.0.0"}) {
    EXPECT_TRUE(policy.check(ip(open))) << open;
  }
}

// The metadata and credential endpoints the clouds document outside 169.254.0.0/16: AWS's
// fd00:ec2::/32 (IMDS fd00:ec2::254, the EKS Pod Identity agent fd00:ec2::23, the DNS resolver and
// time server beside them), GCP's fd20:ce::254, Azure's WireServer 168.63.129.16, Alibaba
// Cloud's 100.100.100.200, Oracle's 192.0.0.192 and Akamai (Linode)'s fd00:a9fe:a9fe::1: closed,
// with the reason the metadata refusal gives, in every spelling, and opened only by the operator.
TEST(UpstreamAddressPolicy, CloudMetadataEndpointsOutsideLinkLocalAreClosed) {
  UpstreamAddressPolicy policy;
  for (const char* closed :
       {"fd00:ec2::254", "fd00:ec2::23", "fd00:ec2::253", "fd00:ec2::123", "fd00:ec2:0:1::5", "fd20:ce::254",
        "168.63.129.16", "100.100.100.200", "192.0.0.192", "fd00:a9fe:a9fe::1", "::ffff:168.63.129.16",
        "::ffff:100.100.100.200", "64:ff9b::c000:c0", "169.254.169.254", "169.254.170.2", "169.254.170.23"}) {
    auto verdict = policy.check(ip(closed));
    ASSERT_FALSE(verdict) << closed;
    EXPECT_EQ(verdict.error().field, "uri");
    EXPECT_NE(verdict.error().message.find("cloud metadata"), std::string::npos) << verdict.error().message;
    EXPECT_NE(verdict.error().message.find("--allow-upstream"), std::string::npos) << verdict.error().message;
  }
  // Their neighbours are ordinary private or public addresses.
  for (const char* open :
       {"fd00:ec3::254", "fd00:ec1::254", "fd20:ce::253", "fd20:cf::254", "168.63.129.17", "168.63.129.15",
        "100.100.100.201", "100.100.100.199", "192.0.0.193", "192.0.0.191", "fd00:a9fe:a9fe::2", "fd00::1"}) {
    EXPECT_TRUE(policy.check(ip(open))) << open;
  }
  for (const char* host : {"[fd00:ec2::254]", "[fd00:ec2:0::254]", "[FD00:EC2::23]", "0xa83f8110",
                           "2822734096", "100.100.25800", "[::ffff:a83f:8110]"}) {
    auto verdict = policy.check_without_dns(host);
    ASSERT_TRUE(verdict.has_value()) << host;
    EXPECT_FALSE(*verdict) << host;
  }
  UpstreamAddressPolicy opened({cidr("fd00:ec2::/32"), cidr("168.63.129.16")});
  EXPECT_TRUE(opened.check(ip("fd00:ec2::254")));
  EXPECT_TRUE(opened.check(ip("168.63.129.16")));
  EXPECT_FALSE(opened.check(ip("fd20:ce::254")));
}

TEST(UpstreamAddressPolicy, TheOperatorOpensAndClosesRangesAndDenyWins) {
  UpstreamAddressPolicy policy({cidr("127.0.0.0/8"), cidr("10.0.0.0/8")}, {cidr("10.1.0.0/16"), cidr("8.8.8.8")});
  EXPECT_TRUE(policy.check(ip("127.0.0.1")));
  EXPECT_TRUE(policy.check(ip("::ffff:127.0.0.1")));  // the IPv4 behind it is what was opened
  EXPECT_FALSE(policy.check(ip("::1")));              // another family, not opened
  EXPECT_FALSE(policy.check(ip("169.254.169.254")));
  EXPECT_TRUE(policy.check(ip("10.2.0.1")));
  auto denied = policy.check(ip("10.1.2.3"));
  ASSERT_FALSE(denied);
  EXPECT_NE(denied.error().message.find("--deny-upstream"), std::string::npos);
  EXPECT_FALSE(policy.check(ip("8.8.8.8")));
  EXPECT_FALSE(policy.check(ip("::ffff:8.8.8.8")));
}

TEST(UpstreamAddressPolicy, TheServicesOwnEndpointsAreClosedEvenInsideAnOpenedRange) {
  UpstreamAddressPolicy policy({cidr("10.0.0.0/8"), cidr("127.0.0.0/8")}, {},
                               {{ip("10.0.0.5"), 8443}, {ip("2001:db8::5"), 443}, {ip("127.0.0.1"), 8080}});
  EXPECT_TRUE(policy.check(ip("10.0.0.6"), 8443));
  EXPECT_TRUE(policy.check(ip("10.0.0.5"), 9000));  // another service on the same machine
  auto own = policy.check(ip("10.0.0.5"), 8443);
  ASSERT_FALSE(own);
  EXPECT_NE(own.error().message.find("the service itself"), std::string::npos);
  EXPECT_FALSE(policy.check(ip("::ffff:10.0.0.5"), 8443));
  EXPECT_FALSE(policy.check(ip("2001:db8::5"), 443));
  EXPECT_FALSE(policy.check_without_dns("localhost", 8080).value());
  EXPECT_TRUE(policy.check_without_dns("localhost", 8081).value());
}

TEST(UpstreamAddressPolicy, HostsAreJudgedWithoutDnsWhenTheyAreAddressesOrLocalhost) {
  UpstreamAddressPolicy policy;
  for (const char* closed : {"127.0.0.1", "[::1]", "::1", "2130706433", "0177.0.0.1", "0x7f.1", "0xA9FEA9FE",
                             "localhost", "LOCALHOST", "localhost.", "api.localhost", "[::ffff:169.254.169.254]"}) {
    auto verdict = policy.check_without_dns(closed);
    ASSERT_TRUE(verdict.has_value()) << closed;
    EXPECT_FALSE(*verdict) << closed;
  }
  auto open = policy.check_without_dns("93.184.216.34");
  ASSERT_TRUE(open.has_value());
  EXPECT_TRUE(*open);
  for (const char* name : {"lambda.us-east-1.amazonaws.com", "localhost.example.com", "notlocalhost", "example"}) {
    EXPECT_FALSE(policy.check_without_dns(name).has_value()) << name;
  }
}

}  // namespace
