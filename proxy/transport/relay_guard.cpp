// The relay's side of the guard (proxy/guard/): admission before anything is spent
// on a client, eviction carried to the evicted relay's own loop, the login penalty
// behind the session's LoginGate, and the refusal log lines.
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>

#include "proxy/transport/no_throw.hpp"
#include "proxy/transport/relay.hpp"
#include "proxy/util/cidr.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr auto kRefusalWrite = std::chrono::seconds(5);  // TLS handshake and BYE of a refused client

std::string_view refusal_bye(std::string_view reason) {
  if (reason == "address_full") return "* BYE [UNAVAILABLE] Too many connections from your address; try again later\r\n";
  return "* BYE [UNAVAILABLE] Too many connections; try again later\r\n";
}

}  // namespace

void log_limit_refusal(const guard::RefusalLog::Line& line, std::chrono::seconds interval, bool summary) {
  util::log_line(util::LogLevel::Warning,
                 "event=limit_refused reason=" + line.reason +
                     " client=" + (line.address ? line.address->to_string() : std::string("other")) +
                     " refused=" + std::to_string(line.count) +
                     (summary ? " over_s=" + std::to_string(interval.count()) : std::string(" first_in_s=") +
                                                                                    std::to_string(interval.count())));
}

// Carries an eviction from whichever loop admitted the newcomer to the evicted
// relay's own loop; the relay may have gone meanwhile (relay is then null).
class Relay::EvictHandle final : public guard::Evictable, public std::enable_shared_from_this<EvictHandle> {
 public:
  EvictHandle(asio::any_io_executor executor, Relay* owner) : relay(owner), executor_(std::move(executor)) {}
  void evict() override {
    asio::post(executor_, [self = shared_from_this()] {
      if (self->relay) self->relay->evict();
    });
  }
  Relay* relay;  // touched on the relay's thread only

 private:
  asio::any_io_executor executor_;
};

void Relay::leave_guard() {
  if (!admitted_) return;
  admitted_ = false;
  drop_evict_handle();
  listener_.guard->admissions().ended(id_);
}

void Relay::drop_evict_handle() {
  if (!evict_handle_) return;
  evict_handle_->relay = nullptr;
  evict_handle_.reset();
}

asio::awaitable<bool> Relay::admit() {
  auto* guard = listener_.guard;
  if (!guard) co_return true;
  // An address that can't be read (the peer left already) counts as 0.0.0.0.
  address_key_ = guard::AddressKey::parse(client_addresses_->source_ip).value_or(guard::AddressKey{});
  auto handle = std::make_shared<EvictHandle>(client_.socket().get_executor(), this);
  auto verdict = guard->admissions().admit(id_, address_key_, handle);
  if (verdict.evicted) verdict.evicted->evict();
  if (verdict.refusal == guard::Refusal::None) {
    evict_handle_ = std::move(handle);
    admitted_ = prelogin_ = true;
    co_return true;
  }
  const auto reason = guard::refusal_name(verdict.refusal);
  note_refusal(reason);
  // The client hears why, within a bounded time; nothing is logged per connection.
  asio::steady_timer timer(co_await asio::this_coro::executor, kRefusalWrite);
  if (listener_.settings.implicit_tls) {
    const auto tls = listener_.client_tls->current();  // a reload may swap it meanwhile
    auto handshake = co_await (client_.accept_tls(tls.get()) || timer.async_wait(kNoThrow));
    if (handshake.index() == 1 || std::get<0>(handshake)) co_return false;
  }
  (void)co_await (client_.write_all(refusal_bye(reason)) || timer.async_wait(kNoThrow));
  co_return false;
}

void Relay::note_refusal(std::string_view reason) {
  if (listener_.telemetry) listener_.telemetry->limit_refusal(reason);
  auto& refusals = listener_.guard->refusals();
  if (auto line = refusals.note(address_key_, reason, Clock::now())) {
    log_limit_refusal(*line, refusals.interval(), false);
  }
}

void Relay::evict() {
  if (closing_ || ending_ || !prelogin_) return;
  note_refusal("prelogin_full_evicted");
  if (!session_) {
    evict_requested_ = true;  // still setting up: ends as soon as it runs
    return;
  }
  end(CloseReason::Evicted);
  update();
}

std::chrono::milliseconds Relay::login_delay() {
  if (!listener_.guard) return std::chrono::milliseconds{0};  // routing without a guard
  const auto wait = listener_.guard->penalty().delay(address_key_, Clock::now());
  if (wait.count() > 0 && listener_.telemetry) {
    listener_.telemetry->login_penalty(std::chrono::duration<double>(wait).count());
  }
  return wait;
}

std::uint64_t Relay::fold_credentials(std::uint64_t so_far, std::string_view piece) const {
  if (!listener_.guard) return 0;
  return listener_.guard->digest().fold(so_far, piece);
}

void Relay::login_failed(std::uint64_t credentials) {
  if (route_) {
    route_login_answered(false);
    // The proxy's own NO when no backend could be had is no wrong password.
    if (route_unavailable_answer()) return;
  }
  if (!listener_.guard) return;
  const auto failure = listener_.guard->penalty().failed(address_key_, credentials, Clock::now());
  if (listener_.telemetry) listener_.telemetry->login_failed(failure.repeated);
  // One line per failure, for fail2ban (dist/fail2ban/filter.d/imapscope.conf): the
  // address alone in client=, never the user or what was sent.
  const auto address = util::address_of(client_peer_);
  const auto colon = client_peer_.rfind(':');
  util::log_line(util::LogLevel::Warning,
                 "event=login_failed session=" + std::to_string(id_) + " listener=" + listener_.settings.name +
                     " client=" + std::string(address) +
                     " port=" + (colon == std::string::npos ? std::string("0") : client_peer_.substr(colon + 1)) +
                     " failures=" + std::to_string(failure.failures) +
                     " repeated=" + (failure.repeated ? "yes" : "no") +
                     " next_delay_ms=" + std::to_string(failure.next_delay.count()));
}

void Relay::login_succeeded() {
  if (route_) route_login_answered(true);
  if (listener_.guard) listener_.guard->penalty().succeeded(address_key_);
}

}  // namespace imapscope::transport
