#include "proxy/inspect/reader.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>

namespace imapscope::inspect {
namespace {

using json = nlohmann::json;

std::string seconds(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(6) << s;
  return o.str();
}

std::string millis(double us) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(us < 10'000 ? 3 : 1) << us / 1000 << " ms";
  return o.str();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) ;
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

std::string text_of(const json& e) { return e.value("text", std::string()); }

}  // namespace

std::optional<std::int64_t> parse_time_us(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; })) {
    return static_cast<std::int64_t>(std::stod(text) * 1e6);
  }
  std::tm tm{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return std::nullopt;
  double fraction = 0;
  if (*rest == '.') fraction = std::stod(std::string("0") + rest);
  return static_cast<std::int64_t>(timegm(&tm)) * 1'000'000 + static_cast<std::int64_t>(fraction * 1e6);
}

Transcript read_transcripts(const std::vector<std::string>& files, const ReadFilter& filter) {
  Transcript t;
  for (const auto& file : files) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error(file + ": cannot be read");
    for (std::string line; std::getline(in, line);) {
      json e = json::parse(line, nullptr, false);
      if (e.is_discarded() || !e.is_object() || !e.contains("s") || !e.contains("t")) {
        ++t.bad_lines;
        continue;
      }
      const auto id = e["s"].get<std::uint64_t>();
      if (filter.session && *filter.session != id) continue;
      const auto at = e["t"].get<std::int64_t>();
      if ((filter.from_us && at < *filter.from_us) || (filter.to_us && at > *filter.to_us)) continue;
      t.sessions[id].push_back(std::move(e));
    }
  }
  for (auto& [id, events] : t.sessions) {
    std::stable_sort(events.begin(), events.end(),
                     [](const json& a, const json& b) { return a["t"].get<std::int64_t>() < b["t"].get<std::int64_t>(); });
  }
  return t;
}

void render_conversation(std::ostream& out, std::uint64_t session, const std::vector<json>& events,
                         const ReadFilter& filter) {
  if (events.empty()) return;
  const auto start = events.front()["t"].get<std::int64_t>();
  std::map<std::string, std::pair<std::int64_t, std::string>> sent;  // tag -> (time, command)
  out << "=== session " << session;
  for (const auto& e : events) {
    if (e.value("event", "") == "start") {
      out << " (" << e.value("client_address", "") << ", listener " << e.value("listener", "") << ", tls "
          << e.value("tls", "") << ")";
      break;
    }
  }
  out << "\n";
  for (const auto& e : events) {
    const auto at = e["t"].get<std::int64_t>();
    const std::string stamp = "+" + seconds(static_cast<double>(at - start) / 1e6) + " ";
    const std::string dir = e.value("dir", "");
    const std::string tag = e.value("tag", "");
    if (dir == "C" && !tag.empty()) sent[tag] = {at, e.value("command", "")};
    if (filter.command) {
      // Only the command asked for, and the tagged answers to it.
      const bool wanted_command = dir == "C" && e.value("command", "") == *filter.command;
      const auto it = sent.find(tag);
      const bool wanted_answer = dir == "S" && !tag.empty() && it != sent.end() && it->second.second == *filter.command;
      if (!wanted_command && !wanted_answer) continue;
    }
    if (!dir.empty()) {
      out << stamp << dir << ": " << text_of(e);
      if (e.contains("literals")) {
        for (const auto& l : e["literals"]) out << "  <literal " << l.value("size", 0) << " bytes>";
      }
      if (dir == "S" && e.value("kind", "") == "tagged") {
        const auto it = sent.find(tag);
        if (it != sent.end()) out << "   [" << millis(static_cast<double>(at - it->second.first)) << "]";
      }
      out << "\n";
      continue;
    }
    if (filter.command) continue;
    const std::string event = e.value("event", "");
    if (event == "rule") {
      out << stamp << "   rule " << e.value("rule", "") << " (on the " << e.value("on", "") << ")\n";
    } else if (event == "client") {
      out << stamp << "   client: " << e.value("family", "") << " " << e.value("version", "") << " ("
          << e.value("method", "") << (e.value("settled", false) ? ", settled" : "") << ")\n";
    } else if (event == "user") {
      out << stamp << "   user: " << e.value("user", "") << "\n";
    } else if (event == "tls") {
      out << stamp << "   TLS on the " << e.value("side", "") << " leg: " << e.value("version", "") << "\n";
    } else if (event == "protocol_error") {
      out << stamp << "   protocol error from " << e.value("dir", "") << ": " << e.value("kind", "") << "\n";
    } else if (event == "close") {
      out << stamp << "   closed: " << e.value("reason", "");
      if (e.contains("cause")) out << " (" << e.value("cause", "") << (e.contains("cause_detail") ? ": " + e.value("cause_detail", "") : "") << ")";
      out << "\n";
    }
  }
}

json summarise(std::uint64_t session, const std::vector<json>& events) {
  json s{{"session", session}};
  if (events.empty()) return s;
  std::map<std::string, std::pair<std::int64_t, std::string>> sent;
  std::map<std::string, std::vector<double>> latency;
  std::map<std::string, int> mix, rules;
  json errors = json::array();
  std::uint64_t bytes[2] = {0, 0}, literal_bytes[2] = {0, 0};
  for (const auto& e : events) {
    const std::string dir = e.value("dir", "");
    const std::string event = e.value("event", "");
    const auto at = e["t"].get<std::int64_t>();
    if (event == "start") s["client_address"] = e.value("client_address", "");
    if (event == "client") s["client"] = {{"family", e.value("family", "")}, {"version", e.value("version", "")},
                                          {"method", e.value("method", "")}, {"confidence", e.value("confidence", 0.0)}};
    if (event == "user") s["user"] = e.value("user", "");
    if (event == "rule") ++rules[e.value("rule", "")];
    if (event == "close") {
      s["closed"] = e.value("reason", "");
      if (e.contains("cause")) s["close_cause"] = e.value("cause", "");
    }
    if (dir == "C" || dir == "S") {
      const int i = dir == "C" ? 0 : 1;
      bytes[i] += text_of(e).size() + 2;
      if (e.contains("literals")) {
        for (const auto& l : e["literals"]) literal_bytes[i] += l.value("size", std::uint64_t{0});
      }
    }
    const std::string tag = e.value("tag", "");
    if (dir == "C" && !tag.empty()) {
      const std::string command = e.value("command", "");
      sent[tag] = {at, command};
      ++mix[command];
    } else if (dir == "S" && e.value("kind", "") == "tagged") {
      const auto it = sent.find(tag);
      if (it == sent.end()) continue;
      if (it->second.second != "IDLE") latency[it->second.second].push_back(static_cast<double>(at - it->second.first));
      const std::string status = e.value("status", "");
      if (status == "NO" || status == "BAD") errors.push_back({{"command", it->second.second}, {"text", text_of(e)}});
      sent.erase(it);
    }
  }
  s["duration_s"] = static_cast<double>(events.back()["t"].get<std::int64_t>() - events.front()["t"].get<std::int64_t>()) / 1e6;
  s["commands"] = mix;
  json lat = json::object();
  for (auto& [command, values] : latency) {
    lat[command] = {{"count", values.size()}, {"p50_ms", percentile(values, 0.5) / 1000},
                    {"p95_ms", percentile(values, 0.95) / 1000}, {"max_ms", *std::max_element(values.begin(), values.end()) / 1000}};
  }
  s["latency"] = lat;
  s["errors"] = errors;
  s["rule_hits"] = rules;
  s["bytes"] = {{"client", bytes[0]}, {"client_literals", literal_bytes[0]}, {"server", bytes[1]},
                {"server_literals", literal_bytes[1]}};
  return s;
}

void render_summary(std::ostream& out, const json& s) {
  out << "--- summary of session " << s["session"] << "\n";
  if (s.contains("client")) {
    const auto& c = s["client"];
    out << "client: " << c["family"].get<std::string>() << " " << c["version"].get<std::string>() << " (by "
        << c["method"].get<std::string>() << ", confidence " << c["confidence"].get<double>() << ")\n";
  }
  if (s.contains("user")) out << "user: " << s["user"].get<std::string>() << "\n";
  if (s.contains("commands")) {
    out << "commands:";
    for (const auto& [command, n] : s["commands"].items()) out << " " << command << " " << n;
    out << "\n";
  }
  if (s.contains("latency")) {
    for (const auto& [command, l] : s["latency"].items()) {
      out << "latency " << command << ": p50 " << l["p50_ms"].get<double>() << " ms, p95 " << l["p95_ms"].get<double>()
          << " ms, max " << l["max_ms"].get<double>() << " ms (" << l["count"] << ")\n";
    }
  }
  if (s.contains("errors")) {
    for (const auto& e : s["errors"]) out << "NO/BAD: " << e["command"].get<std::string>() << ": " << e["text"].get<std::string>() << "\n";
  }
  if (s.contains("rule_hits")) {
    for (const auto& [rule, n] : s["rule_hits"].items()) out << "rule hit: " << rule << " x" << n << "\n";
  }
  if (s.contains("bytes")) {
    const auto& b = s["bytes"];
    out << "bytes: client " << b["client"] << " (+" << b["client_literals"] << " literal), server " << b["server"]
        << " (+" << b["server_literals"] << " literal)\n";
  }
  if (s.contains("closed")) out << "closed: " << s["closed"].get<std::string>() << " after " << s["duration_s"] << " s\n";
}

}  // namespace imapscope::inspect
