// PROXY protocol headers as HAProxy sends them (v1 text, v2 binary), the prefixes a
// peek may return, and what a client that isn't a balancer sends.
#include <gtest/gtest.h>

#include <string>

#include "proxy/transport/proxy_protocol.hpp"

namespace imapscope::transport {
namespace {

using namespace std::string_literals;

const std::string kSignature = "\r\n\r\n\0\r\nQUIT\n"s;

std::string v2(unsigned char ver_cmd, unsigned char family, const std::string& block) {
  std::string h = kSignature;
  h += static_cast<char>(ver_cmd);
  h += static_cast<char>(family);
  h += static_cast<char>(block.size() >> 8);
  h += static_cast<char>(block.size() & 0xff);
  return h + block;
}

TEST(ProxyProtocol, Version1) {
  const auto r = parse_proxy_header("PROXY TCP4 192.0.2.1 198.51.100.1 56324 993\r\n* TLS bytes");
  ASSERT_EQ(r.status, ProxyParse::Done) << r.error;
  EXPECT_EQ(r.length, 45u);
  EXPECT_EQ(r.header.source_address, "192.0.2.1");
  EXPECT_EQ(r.header.source_port, 56324);
  EXPECT_EQ(r.header.destination_address, "198.51.100.1");
  EXPECT_EQ(r.header.destination_port, 993);
  const auto six = parse_proxy_header("PROXY TCP6 2001:db8::1 ::1 4000 143\r\n");
  ASSERT_EQ(six.status, ProxyParse::Done);
  EXPECT_EQ(six.header.source_address, "2001:db8::1");
  const auto unknown = parse_proxy_header("PROXY UNKNOWN\r\n");
  ASSERT_EQ(unknown.status, ProxyParse::Done);
  EXPECT_TRUE(unknown.header.local);
}

TEST(ProxyProtocol, Version2) {
  const std::string ipv4 = "\xc0\x00\x02\x01\xc6\x33\x64\x01\xdb\xe4\x03\xe1"s;  // 192.0.2.1:56292 -> 198.51.100.1:993
  const auto header = v2(0x21, 0x11, ipv4 + "\x03\x00\x04\x01\x02\x03\x04"s);  // plus a CRC TLV
  const auto r = parse_proxy_header(header + "a1 CAPABILITY\r\n");
  ASSERT_EQ(r.status, ProxyParse::Done) << r.error;
  EXPECT_EQ(r.length, header.size());
  EXPECT_EQ(r.header.source_address, "192.0.2.1");
  EXPECT_EQ(r.header.source_port, 56292);
  EXPECT_EQ(r.header.destination_port, 993);
  std::string ipv6(36, '\0');
  ipv6[0] = '\x20', ipv6[1] = '\x01', ipv6[2] = '\x0d', ipv6[3] = '\xb8', ipv6[15] = '\x07';
  ipv6[33] = '\x50', ipv6[35] = '\x8f';
  const auto six = parse_proxy_header(v2(0x21, 0x21, ipv6));
  ASSERT_EQ(six.status, ProxyParse::Done) << six.error;
  EXPECT_EQ(six.header.source_address, "2001:db8::7");
  EXPECT_EQ(six.header.source_port, 80);
  EXPECT_EQ(six.header.destination_port, 143);
  const auto local = parse_proxy_header(v2(0x20, 0x00, ""));  // the balancer's own health check
  ASSERT_EQ(local.status, ProxyParse::Done);
  EXPECT_TRUE(local.header.local);
}

TEST(ProxyProtocol, PartialHeadersWaitForMore) {
  const std::string full = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 993\r\n";
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(parse_proxy_header(full.substr(0, n)).status, ProxyParse::NeedMore) << n;
  }
  const auto binary = v2(0x21, 0x11, "\xc0\x00\x02\x01\xc6\x33\x64\x01\xdb\xe4\x03\xe1"s);
  for (std::size_t n = 0; n < binary.size(); ++n) {
    EXPECT_EQ(parse_proxy_header(binary.substr(0, n)).status, ProxyParse::NeedMore) << n;
  }
}

TEST(ProxyProtocol, AnythingElseIsRefused) {
  for (const std::string& bad : {"a1 CAPABILITY\r\n"s, "\x16\x03\x01\x02\x00"s, "PROXY TCP4 192.0.2.1\r\n"s,
                                 "PROXY TCP4 300.0.2.1 198.51.100.1 1 2\r\n"s, "PROXY TCP4 192.0.2.1 198.51.100.1 1 70000\r\n"s,
                                 "PROXY TCP6 192.0.2.1 198.51.100.1 1 2\r\n"s, "PROXY " + std::string(120, 'x'),
                                 v2(0x31, 0x11, std::string(12, '\0')), v2(0x22, 0x11, std::string(12, '\0')),
                                 v2(0x21, 0x11, std::string(8, '\0')), v2(0x21, 0x12, std::string(12, '\0'))}) {
    const auto r = parse_proxy_header(bad);
    EXPECT_EQ(r.status, ProxyParse::Invalid) << bad;
    EXPECT_FALSE(r.error.empty());
  }
}

ProxyHeader client(std::string source, std::uint16_t sport, std::string destination, std::uint16_t dport) {
  ProxyHeader h;
  h.source_address = std::move(source);
  h.source_port = sport;
  h.destination_address = std::move(destination);
  h.destination_port = dport;
  return h;
}

TEST(ProxyProtocol, MadeHeadersParseBack) {
  for (int version : {1, 2}) {
    for (const auto& h : {client("192.0.2.1", 56324, "198.51.100.1", 993),
                          client("2001:db8::1", 40000, "2001:db8::2", 143)}) {
      const auto bytes = make_proxy_header(version, h);
      const auto r = parse_proxy_header(bytes + "A1 NOOP\r\n");
      ASSERT_EQ(r.status, ProxyParse::Done) << r.error;
      EXPECT_EQ(r.length, bytes.size());
      EXPECT_EQ(r.header.version, version);
      EXPECT_FALSE(r.header.local);
      EXPECT_EQ(r.header.source_address, h.source_address);
      EXPECT_EQ(r.header.destination_address, h.destination_address);
      EXPECT_EQ(r.header.source_port, h.source_port);
      EXPECT_EQ(r.header.destination_port, h.destination_port);
    }
  }
  EXPECT_EQ(make_proxy_header(1, client("192.0.2.1", 1, "198.51.100.1", 2)), "PROXY TCP4 192.0.2.1 198.51.100.1 1 2\r\n");
  EXPECT_EQ(make_proxy_header(2, client("192.0.2.1", 1, "198.51.100.1", 2)).size(), 16u + 12u);
}

TEST(ProxyProtocol, MadeHeadersForMixedAndUnknownAddresses) {
  // A dual-stack socket reports IPv4 clients as mapped addresses: sent as IPv4.
  EXPECT_EQ(make_proxy_header(1, client("::ffff:192.0.2.1", 5, "::ffff:127.0.0.1", 143)),
            "PROXY TCP4 192.0.2.1 127.0.0.1 5 143\r\n");
  // One of each family: both as IPv6.
  EXPECT_EQ(make_proxy_header(1, client("192.0.2.1", 5, "2001:db8::2", 143)),
            "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5 143\r\n");
  EXPECT_EQ(make_proxy_header(1, client("unknown", 0, "127.0.0.1", 143)), "PROXY UNKNOWN\r\n");
  const auto local = parse_proxy_header(make_proxy_header(2, client("unknown", 0, "127.0.0.1", 143)));
  ASSERT_EQ(local.status, ProxyParse::Done);
  EXPECT_TRUE(local.header.local);
}

}  // namespace
}  // namespace imapscope::transport
