#include "proxy/app/admin_api.hpp"

#include <nlohmann/json.hpp>

#include "proxy/observe/collectors.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::app {
namespace {

using transport::HttpRequest;
using transport::HttpResponse;
using json = nlohmann::json;

HttpResponse json_response(int status, const json& body) {
  return HttpResponse::json(status, body.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

// "/api/sessions/12/events" -> "12/events" for prefix "/api/sessions/".
bool consume(std::string_view& path, std::string_view prefix) {
  if (path.substr(0, prefix.size()) != prefix) return false;
  path.remove_prefix(prefix.size());
  return true;
}

}  // namespace

AdminApi::AdminApi(std::shared_ptr<observe::Metrics> metrics, std::shared_ptr<inspect::Inspector> inspector,
                   std::shared_ptr<diagnose::Diagnostics> diagnostics, AdminAccess access)
    : metrics_(std::move(metrics)),
      inspector_(std::move(inspector)),
      diagnostics_(std::move(diagnostics)),
      access_(std::move(access)) {}

std::optional<HttpResponse> AdminApi::probe_or_metrics(const HttpRequest& request) const {
  const bool get = request.method == "GET";
  // Probes carry no token: they tell nothing but whether to send traffic here.
  if (request.path == "/healthz") {
    if (!get) return HttpResponse::error(405, "GET only");
    return HttpResponse::json(200, "{\"status\": \"alive\"}\n");
  }
  if (request.path == "/readyz") {
    if (!get) return HttpResponse::error(405, "GET only");
    const bool ready = ready_ && ready_();
    return HttpResponse::json(ready ? 200 : 503, ready ? "{\"status\": \"ready\"}\n" : "{\"status\": \"draining\"}\n");
  }
  if (request.path == "/metrics") {
    if (!metrics_) return HttpResponse::error(404, "no metrics");
    if (!get) return HttpResponse::error(405, "GET only");
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_->exposition();
    return r;
  }
  return std::nullopt;
}

HttpResponse AdminApi::handle_metrics_only(const HttpRequest& request, const AdminAccess& access) {
  if (auto refused = access.check_host(request)) return *refused;
  if (auto answer = probe_or_metrics(request)) return *answer;
  return HttpResponse::error(404, "this address serves /metrics, /healthz and /readyz only");
}

HttpResponse AdminApi::handle(const HttpRequest& request) {
  if (auto refused = access_.check_host(request)) return *refused;
  std::string_view path = request.path;
  const bool get = request.method == "GET";
  // Metrics on loopback stay open as Prometheus exporters' are: only local users reach
  // them, and they hold bounded labels, no user names.
  if (path == "/healthz" || path == "/readyz" || (path == "/metrics" && access_.loopback())) {
    return *probe_or_metrics(request);
  }
  const bool page = path == "/" || path == "/index.html";
  if (page && get && request.query.count("token")) return access_.log_in(request);
  if (!access_.authorised(request)) return access_.unauthorised(request);
  if (!get) {
    if (auto refused = access_.check_state_change(request)) return *refused;
  }
  if (page) {
    if (!get) return HttpResponse::error(405, "GET only");
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = admin_page();
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "frame-ancestors 'none'");
    return r;
  }
  if (path == "/metrics") return *probe_or_metrics(request);
  if (path == "/api/findings") {
    if (!diagnostics_) return HttpResponse::error(404, "the diagnostics are off (--no-diagnostics)");
    if (!get) return HttpResponse::error(405, "GET only");
    return findings();
  }
  if (consume(path, "/api/backends")) return backends(request, path);
  if (path == "/api/kick") return kick(request);
  if (!inspector_) return HttpResponse::error(404, "not found");
  if (consume(path, "/api/captures")) return captures(request, path);
  if (!consume(path, "/api/sessions")) return HttpResponse::error(404, "not found");
  if (!get) return HttpResponse::error(405, "GET only");
  if (!inspector_->live()) return HttpResponse::error(404, "the live view is off (\"live\": {\"enabled\": false})");
  if (path.empty() || path == "/") return sessions();
  if (!consume(path, "/")) return HttpResponse::error(404, "not found");
  const auto slash = path.find('/');
  const auto id = util::parse_unsigned(path.substr(0, slash));
  if (!id) return HttpResponse::error(404, "not a session number");
  if (slash == std::string_view::npos) return session(*id);
  if (path.substr(slash) == "/events") return events(*id, request);
  return HttpResponse::error(404, "not found");
}

HttpResponse AdminApi::sessions() const {
  const auto now = inspect::now_us();
  json active = json::array(), recent = json::array();
  for (const auto& s : inspector_->live()->active()) active.push_back(s->summary(now));
  for (const auto& s : inspector_->live()->recent()) recent.push_back(s->summary(now));
  return json_response(200, {{"now_us", now}, {"sessions", std::move(active)}, {"recent", std::move(recent)}});
}

HttpResponse AdminApi::session(std::uint64_t id) const {
  const auto s = inspector_->live()->find(id);
  if (!s) return HttpResponse::error(404, "no session " + std::to_string(id) + " (ended long ago, or never was)");
  return json_response(200, s->summary(inspect::now_us()));
}

HttpResponse AdminApi::events(std::uint64_t id, const HttpRequest& request) const {
  const auto s = inspector_->live()->find(id);
  if (!s) return HttpResponse::error(404, "no session " + std::to_string(id) + " (ended long ago, or never was)");
  std::uint64_t after = 0;
  // A reconnecting EventSource says where it was.
  const auto& resume = request.header("last-event-id");
  if (const auto it = request.query.find("after"); it != request.query.end()) after = util::parse_unsigned(it->second).value_or(0);
  if (!resume.empty()) after = util::parse_unsigned(resume).value_or(after);
  const bool stream = request.header("accept").find("text/event-stream") != std::string::npos ||
                      request.query.count("stream") > 0;
  if (!stream) {
    std::uint64_t last = 0;
    json out = json::array();
    for (const auto& line : s->events_after(after, last)) out.push_back(json::parse(line, nullptr, false));
    return json_response(200, {{"session", id}, {"last", last}, {"events", std::move(out)}});
  }
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.body = "retry: 2000\n\n";
  // Server-sent events: each event line as data with its sequence number as id;
  // "end" once the session has closed and everything was sent.
  r.stream = [s, after, ended = false]() mutable -> std::optional<std::string> {
    if (ended) return std::nullopt;
    const bool closed = s->closed();  // read first: events after it are still sent
    std::uint64_t last = 0;
    const auto lines = s->events_after(after, last);
    std::string out;
    std::uint64_t sequence = last - lines.size();
    for (const auto& line : lines) out += "id: " + std::to_string(++sequence) + "\ndata: " + line + "\n\n";
    after = last;
    if (closed) {
      out += "event: end\ndata: {}\n\n";
      ended = true;
    }
    return out;
  };
  return r;
}

HttpResponse AdminApi::findings() const {
  json recent = json::array();
  for (const auto& f : diagnostics_->recent()) {
    recent.push_back({{"at_ms", f.at_ms}, {"session", f.session}, {"finding", f.finding}, {"client", f.client},
                      {"user", f.user}, {"detail", f.detail}});
  }
  json users = json::array();
  for (const auto& [user, counts] : diagnostics_->by_user()) users.push_back({{"user", user}, {"findings", counts}});
  return json_response(200, {{"recent", std::move(recent)}, {"by_user", std::move(users)}});
}

HttpResponse AdminApi::captures(const HttpRequest& request, std::string_view rest) {
  auto& captures = inspector_->captures();
  const auto now = inspect::now_us();
  if (rest.empty() || rest == "/") {
    if (request.method == "GET") {
      json list = json::array();
      for (const auto& c : captures.list(now)) list.push_back(inspect::Captures::to_json(c, now));
      return json_response(200, {{"captures", std::move(list)}, {"writing", inspector_->writer() != nullptr}});
    }
    if (request.method != "POST") return HttpResponse::error(405, "GET or POST");
    if (!inspector_->writer()) {
      return HttpResponse::error(409, "captures are written as transcripts: configure a transcripts folder "
                                      "(--transcripts DIR; \"select\": {\"sample\": 0} writes only captures)");
    }
    const auto body = json::parse(request.body, nullptr, false);
    if (body.is_discarded()) return HttpResponse::error(400, "the body is not JSON");
    try {
      return json_response(201, inspect::Captures::to_json(captures.start(body, now), now));
    } catch (const std::invalid_argument& e) {
      return HttpResponse::error(400, e.what());
    }
  }
  const auto id = util::parse_unsigned(rest.substr(1));
  if (!id) return HttpResponse::error(404, "not a capture number");
  if (request.method == "GET") {
    for (const auto& c : captures.list(now)) {
      if (c.id == *id) return json_response(200, inspect::Captures::to_json(c, now));
    }
    return HttpResponse::error(404, "no capture " + std::to_string(*id) + " running");
  }
  if (request.method != "DELETE") return HttpResponse::error(405, "GET or DELETE");
  if (!captures.stop(*id)) return HttpResponse::error(404, "no capture " + std::to_string(*id) + " running");
  return HttpResponse::json(204, "");
}

void add_inspector_metrics(observe::Metrics& metrics, std::shared_ptr<inspect::Inspector> inspector) {
  metrics.add_collector(observe::function_collector([inspector] {
    using prometheus::ClientMetric;
    using prometheus::MetricFamily;
    using prometheus::MetricType;
    std::vector<MetricFamily> out;
    if (auto* writer = inspector->writer()) {
      MetricFamily lines{"imapscope_transcript_lines_total",
                         "Transcript lines by result: written, or dropped because the writer's queue was full",
                         MetricType::Counter, {}};
      for (const auto& [result, value] : {std::pair{"written", writer->written()}, {"dropped", writer->dropped()}}) {
        ClientMetric m;
        m.label.push_back({"result", result});
        m.counter.value = static_cast<double>(value);
        lines.metric.push_back(m);
      }
      out.push_back(std::move(lines));
    }
    MetricFamily captures{"imapscope_captures_active", "On-demand captures running", MetricType::Gauge, {}};
    ClientMetric m;
    m.gauge.value = static_cast<double>(inspector->captures().list(inspect::now_us()).size());
    captures.metric.push_back(m);
    out.push_back(std::move(captures));
    return out;
  }));
}

}  // namespace imapscope::app
