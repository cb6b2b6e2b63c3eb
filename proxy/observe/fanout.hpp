// Several watchers as one: a session has one observer pointer and the proxy one
// telemetry pointer; these pass every event on to each of theirs, in order.
#pragma once

#include <memory>
#include <vector>

#include "proxy/session/observer.hpp"

namespace imapscope::observe {

class FanoutObserver final : public session::Observer {
 public:
  explicit FanoutObserver(std::vector<std::unique_ptr<session::Observer>> observers)
      : observers_(std::move(observers)) {}

  void command(const imap::Command& c) override { each([&](auto& o) { o.command(c); }); }
  void command_done(std::string_view tag, imap::Verb verb, bool uid, imap::Status status, bool local) override {
    each([&](auto& o) { o.command_done(tag, verb, uid, status, local); });
  }
  void idle_started() override { each([](auto& o) { o.idle_started(); }); }
  void idle_keepalive() override { each([](auto& o) { o.idle_keepalive(); }); }
  void literal_bytes(bool from_client, std::uint64_t n) override { each([&](auto& o) { o.literal_bytes(from_client, n); }); }
  void protocol_error(bool from_client, imap::ErrorCode code) override {
    each([&](auto& o) { o.protocol_error(from_client, code); });
  }
  void client_identified(const identify::ClientInfo& client, bool settled) override {
    each([&](auto& o) { o.client_identified(client, settled); });
  }
  void client_bytes(const imap::Command& c, imap::EventKind kind, std::string_view raw) override {
    each([&](auto& o) { o.client_bytes(c, kind, raw); });
  }
  void server_bytes(const imap::Response& r, imap::EventKind kind, std::string_view raw) override {
    each([&](auto& o) { o.server_bytes(r, kind, raw); });
  }
  void proxy_to_client(std::string_view bytes) override { each([&](auto& o) { o.proxy_to_client(bytes); }); }
  void rule_hit(std::string_view rule, bool from_client) override { each([&](auto& o) { o.rule_hit(rule, from_client); }); }
  void client_tls_started(std::string_view version) override { each([&](auto& o) { o.client_tls_started(version); }); }
  void session_closed(session::CloseReason reason, const session::CloseCause& cause) override {
    each([&](auto& o) { o.session_closed(reason, cause); });
  }
  void finding(const session::FindingReport& report) override { each([&](auto& o) { o.finding(report); }); }

 private:
  template <typename Fn>
  void each(Fn&& fn) {
    for (auto& o : observers_) fn(*o);
  }
  std::vector<std::unique_ptr<session::Observer>> observers_;
};

class FanoutTelemetry final : public session::Telemetry {
 public:
  explicit FanoutTelemetry(std::vector<std::shared_ptr<session::Telemetry>> all) : all_(std::move(all)) {}

  std::unique_ptr<session::Observer> session_started(const session::SessionStart& start) override {
    std::vector<std::unique_ptr<session::Observer>> observers;
    for (auto& t : all_) {
      if (auto o = t->session_started(start)) observers.push_back(std::move(o));
    }
    if (observers.empty()) return nullptr;
    if (observers.size() == 1) return std::move(observers.front());
    return std::make_unique<FanoutObserver>(std::move(observers));
  }
  void session_ended(std::string_view listener, std::string_view tls, session::CloseReason reason,
                     double seconds) override {
    for (auto& t : all_) t->session_ended(listener, tls, reason, seconds);
  }
  void bytes(bool from_client, std::uint64_t n) override {
    for (auto& t : all_) t->bytes(from_client, n);
  }
  void tls_handshake(bool client_side, bool ok, std::string_view version, bool resumed) override {
    for (auto& t : all_) t->tls_handshake(client_side, ok, version, resumed);
  }
  void upstream_connected(bool ok, double seconds) override {
    for (auto& t : all_) t->upstream_connected(ok, seconds);
  }
  void reload(bool ok) override {
    for (auto& t : all_) t->reload(ok);
  }
  void proxy_header(std::string_view outcome) override {
    for (auto& t : all_) t->proxy_header(outcome);
  }
  void limit_refusal(std::string_view reason) override {
    for (auto& t : all_) t->limit_refusal(reason);
  }
  void login_failed(bool repeated) override {
    for (auto& t : all_) t->login_failed(repeated);
  }
  void login_penalty(double seconds) override {
    for (auto& t : all_) t->login_penalty(seconds);
  }

 private:
  std::vector<std::shared_ptr<session::Telemetry>> all_;
};

}  // namespace imapscope::observe
