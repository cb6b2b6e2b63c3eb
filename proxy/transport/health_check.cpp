#include "proxy/transport/health_check.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>

#include <atomic>
#include <set>

#include "proxy/imap/abnf.hpp"
#include "proxy/transport/no_throw.hpp"
#include "proxy/transport/routing.hpp"
#include "proxy/transport/upstream.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr std::size_t kMaxAnswer = 64 * 1024;  // a CAPABILITY answer is ~300 bytes
constexpr std::size_t kMaxShown = 200;         // of a server's line in an error

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && imap::iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view without_line_end(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  return line;
}

std::string shown(std::string_view text) { return std::string(text.substr(0, kMaxShown)); }

struct Tagged {
  std::string error;  // the connection failed before the tagged answer
  std::string answer;  // the tagged line after the tag: "OK ...", "NO ...", "BAD ..."
};

// Reads lines (after those in `buffer`) up to the one tagged `tag`. A "* CAPABILITY"
// line on the way goes to *capabilities when asked for. The caller's deadline bounds it.
asio::awaitable<Tagged> read_tagged(Stream& stream, std::string& buffer, std::string_view tag,
                                    std::string* capabilities) {
  asio::error_code pending;
  for (;;) {
    for (auto lf = buffer.find('\n'); lf != std::string::npos; lf = buffer.find('\n')) {
      const std::string line(without_line_end(std::string_view(buffer).substr(0, lf)));
      buffer.erase(0, lf + 1);
      if (line.size() > tag.size() && line.compare(0, tag.size(), tag) == 0 && line[tag.size()] == ' ') {
        co_return Tagged{"", line.substr(tag.size() + 1)};
      }
      if (capabilities && starts_with_ci(line, "* CAPABILITY ")) *capabilities = capabilities_of(line);
      if (starts_with_ci(line, "* BYE")) co_return Tagged{"the server ended the connection: " + shown(line), ""};
    }
    if (pending) co_return Tagged{pending == asio::error::eof ? "the server closed the connection" : pending.message(), ""};
    if (buffer.size() > kMaxAnswer) co_return Tagged{"an answer line over 64 KiB", ""};
    auto [ec, data] = co_await stream.read();
    buffer.append(data);
    pending = ec;
  }
}

// The check's steps; check_backend bounds them as a whole.
asio::awaitable<HealthCheckOutcome> check_steps(const route::Backend& backend, const route::HealthSettings& settings,
                                                asio::ssl::context* tls, bool verify) {
  HealthCheckOutcome out;
  if (backend.tls != route::BackendTls::None && tls == nullptr) {
    out.error = "no TLS context for a TLS backend";
    co_return out;
  }
  UpstreamSettings upstream;
  upstream.addresses = {Endpoint{backend.host, backend.port}};
  upstream.tls = upstream_tls(backend.tls);
  upstream.verify = verify;
  upstream.connect_timeout = settings.timeout;
  Timeouts timeouts;
  timeouts.tls_handshake = settings.timeout;
  timeouts.greeting = settings.timeout;
  // Named, not a temporary: GCC 12 destroys a temporary of a co_await's full
  // expression twice.
  const ClientAddresses nobody;  // no forwarding: the check is the proxy's own
  auto connection = co_await connect_upstream(upstream, tls, timeouts, nobody, 0);
  if (!connection.stream) {
    out.error = connection.error;
    co_return out;
  }
  Stream& stream = *connection.stream;
  std::string buffer = std::move(connection.greeting);
  const auto lf = buffer.find('\n');
  const std::string greeting(without_line_end(std::string_view(buffer).substr(0, lf)));
  buffer.erase(0, lf == std::string::npos ? buffer.size() : lf + 1);
  const bool preauth = starts_with_ci(greeting, "* PREAUTH");
  if (!preauth && !starts_with_ci(greeting, "* OK")) {
    out.error = "greeting: " + shown(greeting);
    stream.close();
    co_return out;
  }
  // After STARTTLS the greeting's list is stale (it still has STARTTLS, maybe
  // LOGINDISABLED): asked again, as a client would.
  out.capabilities = connection.did_starttls ? std::string() : capabilities_of(greeting);
  // tag and command must outlive the exchange (named variables, not temporaries).
  auto exchange = [&](const std::string& tag, const std::string& command,
                      std::string* capabilities) -> asio::awaitable<Tagged> {
    const std::string line = tag + " " + command + "\r\n";
    if (auto [ec, n] = co_await stream.write_all(line); ec) co_return Tagged{ec.message(), ""};
    co_return co_await read_tagged(stream, buffer, tag, capabilities);
  };
  const std::string capability_tag = "hc1", login_tag = "hc2", logout_tag = "hc3";
  const std::string capability = "CAPABILITY", logout = "LOGOUT";
  if (out.capabilities.empty()) {
    auto answer = co_await exchange(capability_tag, capability, &out.capabilities);
    if (!answer.error.empty() || !starts_with_ci(answer.answer, "OK")) {
      out.error = "CAPABILITY: " + (answer.error.empty() ? shown(answer.answer) : answer.error);
      stream.close();
      co_return out;
    }
  }
  if (!settings.login_user.empty() && !preauth) {
    const auto user = imap::quoted(settings.login_user);
    const auto password = imap::quoted(settings.login_password);
    if (!user || !password) {
      out.error = "the test login's user or password holds CR, LF or NUL";
      stream.close();
      co_return out;
    }
    // The command carries the password: it goes to the socket only, never to an error.
    const std::string login = "LOGIN " + *user + " " + *password;
    auto answer = co_await exchange(login_tag, login, nullptr);
    if (!answer.error.empty() || !starts_with_ci(answer.answer, "OK")) {
      out.error = "test login: " + (answer.error.empty() ? shown(answer.answer) : answer.error);
      if (answer.error.empty()) (void)co_await exchange(logout_tag, logout, nullptr);
      stream.close();
      co_return out;
    }
  }
  // A polite end: the backend's log shows a logout, not a dropped connection. Its
  // answer doesn't matter.
  (void)co_await exchange(logout_tag, logout, nullptr);
  stream.close();
  out.ok = true;
  co_return out;
}

void log_change(const route::Backend& backend, route::BackendHealth health, const HealthCheckOutcome& outcome) {
  const bool up = health == route::BackendHealth::Up;
  util::log_line(up ? util::LogLevel::Info : util::LogLevel::Warning,
                 std::string("event=") + (up ? "backend_up" : "backend_down") + " backend=" +
                     util::log_quote(backend.name()) + " detail=" +
                     util::log_quote(up ? "health checks pass" : outcome.error));
}

}  // namespace

std::string capabilities_of(std::string_view line) {
  line = without_line_end(line);
  if (starts_with_ci(line, "* CAPABILITY ")) return std::string(line.substr(13));
  for (std::size_t open = line.find('['); open != std::string_view::npos; open = line.find('[', open + 1)) {
    const auto code = line.substr(open + 1);
    if (!starts_with_ci(code, "CAPABILITY ")) continue;
    const auto close = code.find(']');
    if (close == std::string_view::npos) return "";
    return std::string(code.substr(11, close - 11));
  }
  return "";
}

asio::awaitable<HealthCheckOutcome> check_backend(route::Backend backend, route::HealthSettings settings,
                                                  asio::ssl::context* tls, bool verify) {
  asio::steady_timer deadline(co_await asio::this_coro::executor, settings.timeout);
  auto result = co_await (check_steps(backend, settings, tls, verify) || deadline.async_wait(kNoThrow));
  if (result.index() == 1) {
    co_return HealthCheckOutcome{false, "no answer within " + std::to_string(settings.timeout.count()) + " ms", ""};
  }
  co_return std::get<0>(std::move(result));
}

// Lives as long as the last check: a check still running when the checker is gone
// finds `stopped` and reports nothing.
struct HealthChecker::State {
  State(asio::any_io_executor executor, route::Backends& pool, route::HealthSettings health,
        std::shared_ptr<asio::ssl::context> context, bool verify_peer, route::RouteTelemetry* metrics)
      : strand(asio::make_strand(executor)),
        backends(pool),
        settings(std::move(health)),
        tls(std::move(context)),
        verify(verify_peer),
        telemetry(metrics),
        timer(strand) {}

  asio::strand<asio::any_io_executor> strand;  // everything below is touched on it only
  route::Backends& backends;
  const route::HealthSettings settings;
  const std::shared_ptr<asio::ssl::context> tls;
  const bool verify;
  route::RouteTelemetry* const telemetry;
  asio::steady_timer timer;
  std::atomic<bool> stopped{false};
  std::set<std::string> in_flight;  // backends whose check runs
};

namespace {

void report_failure(std::exception_ptr failure) {
  if (!failure) return;
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    util::log_line(util::LogLevel::Error, "event=health_check_failed error=" + util::log_quote(e.what()));
  }
}

asio::awaitable<void> check_one(std::shared_ptr<HealthChecker::State> state, route::Backend backend) {
  const auto outcome = co_await check_backend(backend, state->settings, state->tls.get(), state->verify);
  state->in_flight.erase(backend.name());
  if (state->stopped) co_return;
  const auto change =
      state->backends.check_result(backend, outcome.ok, outcome.error, outcome.capabilities, std::chrono::system_clock::now());
  if (state->telemetry) state->telemetry->backend_checked(backend, outcome.ok);
  if (change) log_change(backend, *change, outcome);
}

asio::awaitable<void> rounds(std::shared_ptr<HealthChecker::State> state) {
  while (!state->stopped) {
    for (auto& backend : state->backends.to_check()) {
      // A check slower than the interval (timeout > interval) isn't doubled.
      if (!state->in_flight.insert(backend.name()).second) continue;
      asio::co_spawn(state->strand, check_one(state, std::move(backend)), report_failure);
    }
    state->timer.expires_after(state->settings.interval);
    (void)co_await state->timer.async_wait(kNoThrow);
  }
}

}  // namespace

HealthChecker::HealthChecker(asio::any_io_executor executor, route::Backends& backends, route::HealthSettings settings,
                             std::shared_ptr<asio::ssl::context> upstream_tls, bool verify,
                             route::RouteTelemetry* telemetry)
    : state_(std::make_shared<State>(std::move(executor), backends, std::move(settings), std::move(upstream_tls), verify,
                                     telemetry)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() { asio::co_spawn(state_->strand, rounds(state_), report_failure); }

void HealthChecker::stop() {
  if (state_->stopped.exchange(true)) return;
  asio::post(state_->strand, [state = state_] { state->timer.cancel(); });
}

}  // namespace imapscope::transport
