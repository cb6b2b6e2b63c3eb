// The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a
// load balancer puts in front of a connection to say who the client really is.
// Parsing only, no sockets: the relay peeks at the first bytes, asks parse_proxy_header
// how long the header is, and consumes exactly that (the TLS ClientHello or the
// client's first command may follow in the same segment). make_proxy_header writes
// one for the upstream.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imapscope::transport {

enum class ProxyParse : std::uint8_t {
  NeedMore,  // a header may still be complete with more bytes
  Done,      // `length` bytes are the header
  Invalid,   // not a PROXY header, or a broken one (`error` says what)
};

struct ProxyHeader {
  bool local = false;  // v1 UNKNOWN, v2 LOCAL or UNSPEC: the connection's own address holds
  std::string source_address, destination_address;
  std::uint16_t source_port = 0, destination_port = 0;
  int version = 0;
};

struct ProxyParseResult {
  ProxyParse status = ProxyParse::NeedMore;
  std::size_t length = 0;
  ProxyHeader header;
  std::string error;
};

inline constexpr std::size_t kMaxProxyHeader = 16 + 4096;  // v2 with TLVs; v1 is at most 107

ProxyParseResult parse_proxy_header(std::string_view bytes);

// The header imapscope sends to its upstream for a client (version 1 or 2). Source
// and destination of different families (a dual-stack listener) are sent as IPv6,
// IPv4 mapped; an address that isn't one gives v1 UNKNOWN / v2 LOCAL.
std::string make_proxy_header(int version, const ProxyHeader& header);

}  // namespace imapscope::transport
