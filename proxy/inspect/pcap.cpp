#include "proxy/inspect/pcap.hpp"

#include <array>
#include <string>

#include "proxy/inspect/encoding.hpp"

namespace imapscope::inspect {
namespace {

using json = nlohmann::json;

// Network byte order, for IP and TCP headers.
void put16(std::string& b, std::uint16_t v) {
  b.push_back(static_cast<char>(v >> 8));
  b.push_back(static_cast<char>(v & 0xff));
}
void put32(std::string& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<char>((v >> shift) & 0xff));
}
// pcapng blocks are written in this host's byte order (the magic tells readers which).
template <typename T>
void host(std::string& b, T v) {
  b.append(reinterpret_cast<const char*>(&v), sizeof v);
}

std::uint16_t checksum(std::string_view data, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < data.size(); i += 2) {
    sum += (static_cast<std::uint32_t>(static_cast<unsigned char>(data[i])) << 8) | static_cast<unsigned char>(data[i + 1]);
  }
  if (data.size() % 2) sum += static_cast<std::uint32_t>(static_cast<unsigned char>(data.back())) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

struct Endpoint {
  std::array<unsigned char, 4> ip;
  std::uint16_t port;
  std::uint32_t seq;
};

// An IPv4 + TCP packet.
std::string packet(const Endpoint& from, const Endpoint& to, std::uint8_t flags, std::string_view payload) {
  std::string tcp;
  put16(tcp, from.port);
  put16(tcp, to.port);
  put32(tcp, from.seq);
  put32(tcp, (flags & 0x10) ? to.seq : 0);
  tcp.push_back(static_cast<char>(5 << 4));
  tcp.push_back(static_cast<char>(flags));
  put16(tcp, 65535);
  put16(tcp, 0);  // checksum, below
  put16(tcp, 0);
  tcp.append(payload);
  std::string pseudo;
  pseudo.append(reinterpret_cast<const char*>(from.ip.data()), 4).append(reinterpret_cast<const char*>(to.ip.data()), 4);
  pseudo.push_back(0);
  pseudo.push_back(6);
  put16(pseudo, static_cast<std::uint16_t>(tcp.size()));
  const auto tcp_sum = checksum(pseudo + tcp);
  tcp[16] = static_cast<char>(tcp_sum >> 8);
  tcp[17] = static_cast<char>(tcp_sum & 0xff);

  std::string ip;
  ip.push_back(0x45);
  ip.push_back(0);
  put16(ip, static_cast<std::uint16_t>(20 + tcp.size()));
  put16(ip, 0);
  put16(ip, 0x4000);  // don't fragment
  ip.push_back(64);
  ip.push_back(6);
  put16(ip, 0);
  ip.append(reinterpret_cast<const char*>(from.ip.data()), 4).append(reinterpret_cast<const char*>(to.ip.data()), 4);
  const auto ip_sum = checksum(ip);
  ip[10] = static_cast<char>(ip_sum >> 8);
  ip[11] = static_cast<char>(ip_sum & 0xff);
  return ip + tcp;
}

void block(std::ostream& out, std::uint32_t type, const std::string& body) {
  std::string b;
  const auto padded = (body.size() + 3) / 4 * 4;
  const auto length = static_cast<std::uint32_t>(12 + padded);
  host(b, type);
  host(b, length);
  b += body;
  b.append(padded - body.size(), '\0');
  host(b, length);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

void enhanced_packet(std::ostream& out, std::int64_t time_us, const std::string& data) {
  std::string body;
  host(body, std::uint32_t{0});  // interface
  const auto t = static_cast<std::uint64_t>(time_us);
  host(body, static_cast<std::uint32_t>(t >> 32));
  host(body, static_cast<std::uint32_t>(t & 0xffffffff));
  host(body, static_cast<std::uint32_t>(data.size()));
  host(body, static_cast<std::uint32_t>(data.size()));
  body += data;
  block(out, 6, body);
}

}  // namespace

std::string wire_bytes(const json& event) {
  const std::string text = event.value("text", std::string());
  std::string out;
  std::size_t pos = 0;
  if (event.contains("literals")) {
    // Put back the CRLF and payload after each literal header, in order.
    for (const auto& literal : event["literals"]) {
      const auto size = literal.value("size", std::uint64_t{0});
      const std::string header = "{" + std::to_string(size);
      const auto at = text.find(header, pos);
      if (at == std::string::npos) break;
      auto end = text.find('}', at);
      if (end == std::string::npos) break;
      // The payload as captured (body_cap_kb), the rest as dots.
      std::string payload;
      if (literal.contains("data")) payload = base64_decode(literal["data"].get<std::string>()).value_or("");
      if (payload.size() > size) payload.resize(static_cast<std::size_t>(size));
      payload.append(static_cast<std::size_t>(size) - payload.size(), '.');
      out.append(text, pos, end + 1 - pos).append("\r\n").append(payload);
      pos = end + 1;
    }
  }
  out.append(text, pos, std::string::npos).append("\r\n");
  return out;
}

void write_pcapng(std::ostream& out, const std::vector<std::pair<std::uint64_t, const std::vector<json>*>>& sessions) {
  {
    std::string shb;
    host(shb, std::uint32_t{0x1A2B3C4D});
    host(shb, std::uint16_t{1});
    host(shb, std::uint16_t{0});
    host(shb, std::int64_t{-1});  // section length unknown
    block(out, 0x0A0D0D0A, shb);
    std::string idb;
    host(idb, std::uint16_t{101});  // LINKTYPE_RAW: IPv4 packets
    host(idb, std::uint16_t{0});
    host(idb, std::uint32_t{0});    // no snap length
    block(out, 1, idb);             // default time resolution: microseconds
  }
  std::uint16_t n = 0;
  for (const auto& [id, events] : sessions) {
    if (events->empty()) continue;
    Endpoint client{{192, 0, 2, 1}, static_cast<std::uint16_t>(40000 + n++), 1000};
    Endpoint server{{192, 0, 2, 143}, 143, 5000};
    std::int64_t t = events->front()["t"].get<std::int64_t>();
    // The handshake, so that dissectors see a whole TCP connection.
    enhanced_packet(out, t, packet(client, server, 0x02, {}));
    ++client.seq;
    enhanced_packet(out, t, packet(server, client, 0x12, {}));
    ++server.seq;
    enhanced_packet(out, t, packet(client, server, 0x10, {}));
    for (const auto& e : *events) {
      const std::string dir = e.value("dir", "");
      if (dir.empty()) continue;
      t = e["t"].get<std::int64_t>();
      Endpoint& from = dir == "C" ? client : server;
      Endpoint& to = dir == "C" ? server : client;
      const std::string bytes = wire_bytes(e);
      for (std::size_t off = 0; off < bytes.size(); off += 60000) {
        const auto piece = std::string_view(bytes).substr(off, 60000);
        enhanced_packet(out, t, packet(from, to, 0x18, piece));  // PSH, ACK
        from.seq += static_cast<std::uint32_t>(piece.size());
      }
    }
    enhanced_packet(out, t, packet(client, server, 0x11, {}));  // FIN, ACK
    ++client.seq;
    enhanced_packet(out, t, packet(server, client, 0x11, {}));
    ++server.seq;
    enhanced_packet(out, t, packet(client, server, 0x10, {}));
  }
}

}  // namespace imapscope::inspect
