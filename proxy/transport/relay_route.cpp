// Routing mode in the relay. Until a backend takes the login, the session's server
// is the pre-login server (route::PreLoginServer): what the session forwards to the
// server goes to it, its answers come back as the server's bytes. So the session
// does everything it does in transparent mode (STARTTLS, LOGINDISABLED, capability
// rewriting, the login penalty, identification, transcripts) without knowing that
// nobody is behind it yet. A complete login is looked up, its backend connected and
// the client's ID and login replayed there; from the last replayed step on the
// backend is the session's server and its tagged answer reaches the client unchanged.
// A NO sends the relay back to the pre-login server for the next try.
#include "proxy/transport/relay.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include "proxy/imap/abnf.hpp"
#include "proxy/transport/relay_route_state.hpp"
#include "proxy/transport/router.hpp"
#include "proxy/transport/routing.hpp"
#include "proxy/transport/server_lines.hpp"
#include "proxy/transport/upstream.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

// The proxy's tag for the client's ID replayed to the backend.
constexpr std::string_view kReplayIdTag = "imapscope-cid";
// What the pre-login server offers when nothing was configured or learnt yet: what
// it can speak itself (Dovecot's pre-login list, less what needs the backend).
constexpr std::string_view kDefaultCapabilities =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN";
// Auth-Wait beyond this is the service's mistake: the client is not held longer.
constexpr std::chrono::seconds kMaxRefusalWait{30};

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && imap::iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace

bool Relay::route_unavailable_answer() const { return route_ && route_->pre && route_->pre->unavailable_answer; }

void Relay::start_routing(std::string_view balancer_peer) {
  const auto& routing = *listener_.routing;
  std::string capabilities = routing.capabilities;
  if (capabilities.empty() && routing.backends) capabilities = routing.backends->shared_capabilities();
  if (capabilities.empty()) capabilities = kDefaultCapabilities;
  route_ = std::make_unique<RouteState>();
  auto& pre = *(route_->pre = std::make_unique<RouteState::PreLogin>(route::PreLoginSettings{std::move(capabilities)}));
  pre.client = std::move(client_addresses_);
  // nginx's Proxy-Protocol-* lines: the addresses the PROXY header named.
  pre.via_proxy_header = !balancer_peer.empty();
  server_leg_.held = pre.server.greeting();
}

bool Relay::route_prelogin() {
  if (!route_->pre || route_->pre->lookup_running || ending_) return false;
  auto& r = *route_->pre;
  std::string& queue = session_->to_server();
  r.unconsumed.append(queue);
  queue.clear();
  if (r.close_after_answer) {
    // A refusal for good (no Auth-Wait): the connection ends once the NO is through.
    if (server_leg_.held.empty()) end(CloseReason::LoginRefused);
    return false;
  }
  if (r.server.closed()) {
    // LOGOUT was answered: the session ends once the answer went through it.
    if (server_leg_.held.empty()) end(CloseReason::PreLoginLogout);
    return false;
  }
  std::string_view input = r.unconsumed;
  const auto before = input.size();
  std::string answers;
  r.server.feed(input, answers);
  const bool moved = input.size() != before || !answers.empty();
  r.unconsumed.erase(0, before - input.size());
  server_leg_.held += answers;
  if (r.server.login_ready()) {
    r.lookup_running = true;
    ++pending_;
    asio::co_spawn(client_.socket().get_executor(), route_login(), [this](std::exception_ptr error) {
      --pending_;
      if (route_->pre) route_->pre->lookup_running = false;
      if (error && !closing_) end_with_cause(CloseReason::ServerError, "exception", "routing failed");
      update();
    });
  }
  return moved;
}

asio::awaitable<void> Relay::route_login() {
  auto& r = *route_->pre;
  const auto& routing = *listener_.routing;
  auto login = r.server.take_login();
  route_->user = login.user;
  r.unavailable_answer = false;
  route::LoginRequest request;
  request.user = login.user;
  request.secret = login.secret;
  request.method = login.method;
  request.attempt = r.server.logins();
  request.client_ip = r.client->source_ip;
  request.client_tls = client_.is_tls();
  if (request.client_tls) {
    request.tls_protocol = client_.tls_version();
    request.tls_cipher = client_.tls_cipher();
  }
  if (r.via_proxy_header) {
    request.proxy_protocol_ip = r.client->source_ip;
    request.proxy_protocol_port = r.client->source_port;
    request.proxy_protocol_server_ip = r.client->local_ip;
    request.proxy_protocol_server_port = r.client->local_port;
  }
  auto result = co_await routing.router->lookup(request);
  if (result.wait.count() > 0) {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::min(result.wait, kMaxRefusalWait));
    co_await timer.async_wait(kNoThrow);
  }
  if (closing_ || ending_) co_return;
  const std::string session_field = "session=" + std::to_string(id_);
  auto refuse = [&](std::string line, bool unavailable) {
    r.unavailable_answer = unavailable;
    server_leg_.held += line;
    r.server.resume();
  };
  if (result.status == route::LookupStatus::Refused) {
    // As nginx: a refusal with Auth-Wait lets the client try again, one without ends
    // the connection after the NO.
    r.close_after_answer = result.wait.count() == 0;
    refuse(route::refusal_line(login.tag, result.message), false);
    co_return;
  }
  if (result.status == route::LookupStatus::Unavailable) {
    // The Router logged why (event=route_lookup_failed); this line says which session.
    util::log_line(util::LogLevel::Info, "event=route_refused " + session_field + " reason=lookup_unavailable");
    refuse(route::unavailable_line(login.tag, "The login service is not available."), true);
    co_return;
  }
  const auto& backend = result.route.backend;
  if (routing.backends) routing.backends->add(backend, false);  // a lookup may name any: checked from now on
  const auto admission = routing.backends ? routing.backends->admit(backend) : route::Admission::Ok;
  if (admission == route::Admission::Down || admission == route::Admission::Draining) {
    util::log_line(util::LogLevel::Warning, "event=route_refused " + session_field + " backend=" + backend.name() +
                                                " reason=" +
                                                (admission == route::Admission::Down ? "backend_down" : "backend_draining"));
    if (routing.telemetry) routing.telemetry->login_replayed("failed");
    refuse(route::unavailable_line(login.tag, "The mail server is not available."), true);
    co_return;
  }

  UpstreamSettings upstream_settings;
  upstream_settings.addresses = {Endpoint{backend.host, backend.port}};
  upstream_settings.tls = upstream_tls(backend.tls);
  upstream_settings.verify = routing.verify;
  upstream_settings.connect_timeout = routing.connect_timeout;
  upstream_settings.forward_client = routing.forward_client;
  auto* tls = upstream_settings.tls == UpstreamTls::None ? nullptr : routing.backend_tls;
  // A backend that takes the connection and never greets must not hold the login
  // longer than one that refuses it.
  auto timeouts = listener_.timeouts;
  timeouts.greeting = std::min(timeouts.greeting, routing.connect_timeout);
  const auto connect_started = Clock::now();
  auto upstream = co_await connect_upstream(upstream_settings, tls, timeouts, *r.client, id_);
  if (auto* telemetry = listener_.telemetry) {  // as in transparent mode: connects, their time, TLS
    telemetry->upstream_connected(upstream.stream != nullptr,
                                  std::chrono::duration<double>(Clock::now() - connect_started).count());
    if (tls && (upstream.stream || upstream.failure == CloseReason::UpstreamTlsFailed)) {
      telemetry->tls_handshake(false, upstream.stream != nullptr, upstream.stream ? upstream.stream->tls_version() : "",
                               upstream.stream && upstream.stream->tls_resumed());
    }
  }
  if (closing_ || ending_) co_return;
  if (!upstream.stream) {
    util::log_line(util::LogLevel::Warning, "event=upstream_failed " + session_field + " backend=" + backend.name() +
                                                " reason=" + std::string(session::close_reason_name(upstream.failure)) +
                                                " detail=" + util::log_quote(upstream.error));
    if (routing.telemetry) routing.telemetry->login_replayed("failed");
    refuse(route::unavailable_line(login.tag, "The mail server is not available."), true);
    co_return;
  }
  if (!upstream.notice.empty()) {
    util::log_line(util::LogLevel::Warning, "event=upstream_notice " + session_field + " detail=" +
                                                util::log_quote(upstream.notice));
  }
  // The backend's greeting is not the client's (it had the proxy's): what follows it is.
  std::string replies = upstream.greeting;
  const auto greeting_end = replies.find('\n');
  replies.erase(0, greeting_end == std::string::npos ? replies.size() : greeting_end + 1);
  const auto deadline = Clock::now() + timeouts.greeting;
  auto& stream = *upstream.stream;
  std::string failure;
  if (!r.server.client_id().empty()) {
    const auto id = route::replay_id_command(kReplayIdTag, r.server.client_id());
    if (auto [ec, n] = co_await stream.write_all(id); ec) failure = "ID: " + ec.message();
    if (failure.empty()) {
      auto [ec, text, line_end] = co_await read_until_tagged(stream, replies, kReplayIdTag, deadline);
      if (ec) failure = "ID: " + ec.message();
      else replies.erase(0, line_end);  // the backend's * ID and OK were for the proxy
    }
  }
  // The login: each step after the backend's "+"; the client had the pre-login
  // server's. Untagged lines on the way go on to the session.
  const route::MasterUser* master = routing.master ? &*routing.master : nullptr;
  const auto steps = route::replay_steps(login, result.route, master);
  if (steps.empty()) failure = "the route asks for a master login and no routing.master_user is set";
  std::string passed_on;
  const std::string tag_prefix = login.tag + " ";
  for (std::size_t i = 0; i < steps.size() && failure.empty(); ++i) {
    if (auto [ec, n] = co_await stream.write_all(steps[i]); ec) {
      failure = "login: " + ec.message();
      break;
    }
    if (i + 1 == steps.size()) break;
    bool continued = false;
    while (!continued && failure.empty()) {
      auto [ec, line_end] = co_await read_line(stream, replies, 0, deadline);
      if (ec) {
        failure = "login: " + ec.message();
        break;
      }
      const std::string_view line = std::string_view(replies).substr(0, line_end);
      if (starts_with_ci(line, "+")) {
        replies.erase(0, line_end);
        continued = true;
      } else if (line.starts_with(tag_prefix)) {
        break;  // answered before all steps went: the answer goes to the client as it is
      } else {
        passed_on.append(line);
        replies.erase(0, line_end);
      }
    }
    if (!continued) break;
  }
  if (closing_ || ending_) co_return;
  if (!failure.empty()) {
    util::log_line(util::LogLevel::Warning, "event=upstream_failed " + session_field + " backend=" + backend.name() +
                                                " reason=login_replay detail=" + util::log_quote(failure));
    if (routing.telemetry) routing.telemetry->login_replayed("failed");
    refuse(route::unavailable_line(login.tag, "The mail server is not available."), true);
    co_return;
  }
  util::log_line(util::LogLevel::Info, "event=routed " + session_field + " backend=" + backend.name() +
                                           " source=" + (result.from_cache ? "cache" : "lookup"));
  server_ = std::move(upstream.stream);
  server_peer_ = upstream.peer;
  route_->backend = backend;
  server_leg_.held += passed_on + replies;
  // What the client sent after its login (pipelined) follows it to the backend.
  session_->to_server().insert(0, r.unconsumed);
  r.unconsumed.clear();
}

// The session saw the backend's answer to the replayed login (LoginGate).
void Relay::route_login_answered(bool ok) {
  auto& r = *route_;
  if (!server_ || !r.pre) return;  // the pre-login server's own NO: no backend involved
  if (auto* telemetry = listener_.routing->telemetry) telemetry->login_replayed(ok ? "ok" : "no");
  if (!ok) {
    r.pre->release_backend = true;
    return;
  }
  if (listener_.routing->backends && r.backend) {
    listener_.routing->backends->session_started(*r.backend);
    r.counted = true;
  }
  r.pre.reset();  // never needed again: an idle routed session keeps none of it
}

// After the backend's NO has gone through: the next login is looked up afresh.
void Relay::maybe_release_backend() {
  auto& r = *route_;
  if (!r.pre || !r.pre->release_backend || !server_ || !session_->server_between_messages() ||
      !server_leg_.held.empty() || unwritten(Side::Server) > 0 || server_leg_.has_compressed()) {
    return;
  }
  r.pre->release_backend = false;
  server_->close();  // a pending wait ends with operation_aborted and touches only the leg's flags
  server_.reset();
  server_peer_.clear();
  server_leg_.held.clear();
  server_leg_.out.clear();
  server_leg_.out_done = 0;
  server_leg_.dead = false;
  server_leg_.low_water = 1;
  r.backend.reset();
  r.pre->server.resume();
}

void Relay::leave_backend() {
  if (!route_ || !route_->counted) return;
  route_->counted = false;
  listener_.routing->backends->session_ended(*route_->backend);
}

bool Relay::kick_matches(const route::KickRequest& request) const {
  if (!route_ || !route_->backend || !route_->counted || closing_ || ending_) return false;
  if (!request.user.empty() && !imap::iequals(request.user, route_->user)) return false;
  if (!request.backend.empty() && request.backend != route_->backend->name()) return false;
  return !request.user.empty() || !request.backend.empty();
}

void Relay::kick(std::string_view reason) {
  if (!session_ || !route_ || closing_ || ending_ || route_->kick_bye) return;
  if (reason.empty()) reason = "Disconnected by the administrator";
  std::string line = "* BYE [UNAVAILABLE] ";
  for (char c : reason.substr(0, 200)) line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  route_->kick_bye = std::make_unique<std::string>(line + "\r\n");
  update();  // maybe_kick(): now, or once the server's message in flight is through
}

void Relay::maybe_kick() {
  if (!route_->kick_bye || ending_ || !session_->server_between_messages() || !server_leg_.held.empty()) return;
  say_bye(*route_->kick_bye);
  end(CloseReason::Kicked);
}

}  // namespace imapscope::transport
