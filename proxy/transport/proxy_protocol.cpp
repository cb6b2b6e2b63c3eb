#include "proxy/transport/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <cstring>

namespace imapscope::transport {
namespace {

constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr std::size_t kV1Max = 107;  // "PROXY TCP6 " + two full IPv6 addresses and ports + CRLF

ProxyParseResult invalid(std::string error) {
  ProxyParseResult r;
  r.status = ProxyParse::Invalid;
  r.error = std::move(error);
  return r;
}

bool parse_port(std::string_view text, std::uint16_t& port) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

bool valid_address(const std::string& text, bool v6) {
  std::array<unsigned char, 16> out{};
  return inet_pton(v6 ? AF_INET6 : AF_INET, text.c_str(), out.data()) == 1;
}

// "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", or "PROXY UNKNOWN...\r\n".
ProxyParseResult parse_v1(std::string_view bytes) {
  const auto crlf = bytes.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (bytes.size() >= kV1Max) return invalid("PROXY v1 line without CRLF in 107 bytes");
    return {};
  }
  ProxyParseResult r;
  r.status = ProxyParse::Done;
  r.length = crlf + 2;
  r.header.version = 1;
  std::string_view line = bytes.substr(6, crlf - 6);  // after "PROXY "
  std::array<std::string_view, 5> parts{};
  std::size_t n = 0;
  while (!line.empty() && n < parts.size()) {
    const auto space = line.find(' ');
    parts[n++] = line.substr(0, space);
    line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  }
  if (n >= 1 && parts[0] == "UNKNOWN") {
    r.header.local = true;
    return r;
  }
  if (n != 5 || !line.empty() || (parts[0] != "TCP4" && parts[0] != "TCP6")) {
    return invalid("PROXY v1 line is not \"PROXY TCP4|TCP6 source destination sport dport\"");
  }
  const bool v6 = parts[0] == "TCP6";
  r.header.source_address = std::string(parts[1]);
  r.header.destination_address = std::string(parts[2]);
  if (!valid_address(r.header.source_address, v6) || !valid_address(r.header.destination_address, v6)) {
    return invalid("PROXY v1 addresses are not " + std::string(v6 ? "IPv6" : "IPv4") + " addresses");
  }
  if (!parse_port(parts[3], r.header.source_port) || !parse_port(parts[4], r.header.destination_port)) {
    return invalid("PROXY v1 ports are not numbers from 0 to 65535");
  }
  return r;
}

std::string address_text(const unsigned char* bytes, bool v6) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, text, sizeof text);
  return text;
}

ProxyParseResult parse_v2(std::string_view bytes) {
  if (bytes.size() < 16) return {};
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if ((byte(12) >> 4) != 2) return invalid("PROXY v2 header with version " + std::to_string(byte(12) >> 4));
  const unsigned command = byte(12) & 0x0F;
  if (command > 1) return invalid("PROXY v2 command " + std::to_string(command) + " is neither LOCAL nor PROXY");
  const std::size_t length = (std::size_t{byte(14)} << 8) | byte(15);
  if (16 + length > kMaxProxyHeader) return invalid("PROXY v2 header longer than " + std::to_string(kMaxProxyHeader));
  if (bytes.size() < 16 + length) return {};
  ProxyParseResult r;
  r.status = ProxyParse::Done;
  r.length = 16 + length;
  r.header.version = 2;
  const unsigned family = byte(13) >> 4, transport = byte(13) & 0x0F;
  // LOCAL (health checks of the balancer itself) and UNSPEC carry no client.
  if (command == 0 || family == 0) {
    r.header.local = true;
    return r;
  }
  if (transport != 1 || (family != 1 && family != 2)) {
    return invalid("PROXY v2 for something other than TCP over IPv4 or IPv6 (family " + std::to_string(family) +
                   ", transport " + std::to_string(transport) + ")");
  }
  const bool v6 = family == 2;
  const std::size_t address_bytes = v6 ? 16 : 4;
  if (length < 2 * address_bytes + 4) return invalid("PROXY v2 address block too short");
  const auto* block = reinterpret_cast<const unsigned char*>(bytes.data() + 16);
  r.header.source_address = address_text(block, v6);
  r.header.destination_address = address_text(block + address_bytes, v6);
  r.header.source_port = static_cast<std::uint16_t>((block[2 * address_bytes] << 8) | block[2 * address_bytes + 1]);
  r.header.destination_port =
      static_cast<std::uint16_t>((block[2 * address_bytes + 2] << 8) | block[2 * address_bytes + 3]);
  return r;  // TLVs after the addresses are skipped
}

// An address as 16 bytes (IPv4 mapped into IPv6) and whether it was IPv4.
bool binary_address(const std::string& text, std::array<unsigned char, 16>& out, bool& v4) {
  out.fill(0);
  std::array<unsigned char, 4> four{};
  if (inet_pton(AF_INET, text.c_str(), four.data()) == 1) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, four.data(), 4);
    v4 = true;
    return true;
  }
  v4 = false;
  if (inet_pton(AF_INET6, text.c_str(), out.data()) != 1) return false;
  // A mapped IPv4 address (what a dual-stack socket reports) is sent as IPv4.
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  v4 = std::memcmp(out.data(), kMapped, 12) == 0;
  return true;
}

}  // namespace

std::string make_proxy_header(int version, const ProxyHeader& h) {
  std::array<unsigned char, 16> source{}, destination{};
  bool source_v4 = false, destination_v4 = false;
  const bool known = !h.local && binary_address(h.source_address, source, source_v4) &&
                     binary_address(h.destination_address, destination, destination_v4);
  const bool v4 = source_v4 && destination_v4;
  const auto text = [&](const std::array<unsigned char, 16>& a) {
    return v4 ? address_text(a.data() + 12, false) : address_text(a.data(), true);
  };
  if (version == 1) {
    if (!known) return "PROXY UNKNOWN\r\n";
    return std::string("PROXY ") + (v4 ? "TCP4 " : "TCP6 ") + text(source) + " " + text(destination) + " " +
           std::to_string(h.source_port) + " " + std::to_string(h.destination_port) + "\r\n";
  }
  std::string out(kV2Signature);
  const auto put16 = [&](unsigned value) {
    out.push_back(static_cast<char>((value >> 8) & 0xff));
    out.push_back(static_cast<char>(value & 0xff));
  };
  if (!known) {
    out.push_back('\x20');  // version 2, LOCAL
    out.push_back('\x00');  // UNSPEC
    put16(0);
    return out;
  }
  out.push_back('\x21');                  // version 2, PROXY
  out.push_back(v4 ? '\x11' : '\x21');   // TCP over IPv4 / IPv6
  put16(v4 ? 12 : 36);
  const auto put = [&](const std::array<unsigned char, 16>& a) {
    const std::size_t from = v4 ? 12 : 0;
    out.append(reinterpret_cast<const char*>(a.data() + from), 16 - from);
  };
  put(source);
  put(destination);
  put16(h.source_port);
  put16(h.destination_port);
  return out;
}

ProxyParseResult parse_proxy_header(std::string_view bytes) {
  // Decide on the prefix seen so far: a client that isn't a balancer fails fast.
  const auto v1_prefix = std::string_view("PROXY ").substr(0, std::min<std::size_t>(bytes.size(), 6));
  const auto v2_prefix = kV2Signature.substr(0, std::min(bytes.size(), kV2Signature.size()));
  if (bytes.substr(0, v1_prefix.size()) == v1_prefix && !bytes.empty() && bytes[0] == 'P') {
    return bytes.size() < 6 ? ProxyParseResult{} : parse_v1(bytes);
  }
  if (bytes.substr(0, v2_prefix.size()) == v2_prefix && !bytes.empty()) {
    return bytes.size() < kV2Signature.size() ? ProxyParseResult{} : parse_v2(bytes);
  }
  if (bytes.empty()) return {};
  return invalid("the connection does not start with a PROXY protocol header");
}

}  // namespace imapscope::transport
