// The words a session_end line gives for a failed leg: the system's errors by name,
// a TLS alert the peer sent by the alert's name.
#include <gtest/gtest.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <asio/error.hpp>
#include <asio/ssl/error.hpp>

#include "proxy/transport/leg_failure.hpp"

namespace imapscope::transport {
namespace {

asio::error_code ssl_code(int reason) {
  return {static_cast<int>(ERR_PACK(ERR_LIB_SSL, 0, reason)), asio::error::get_ssl_category()};
}

TEST(LegFailure, SystemErrorsByName) {
  EXPECT_EQ(describe_leg_failure(asio::error::connection_reset).cause, "reset");
  EXPECT_EQ(describe_leg_failure(asio::error::connection_reset).detail, "Connection reset by peer");
  EXPECT_EQ(describe_leg_failure(asio::error::broken_pipe).cause, "broken_pipe");
  EXPECT_EQ(describe_leg_failure(asio::error::timed_out).cause, "timed_out");
  EXPECT_EQ(describe_leg_failure(asio::error::no_buffer_space).cause, "other");
  EXPECT_FALSE(describe_leg_failure(asio::error::no_buffer_space).detail.empty());
}

TEST(LegFailure, TlsAlertsTheirNameOtherTlsErrorsOpenSslsWords) {
  OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, nullptr);  // as making the proxy's TLS contexts does
  const auto alert = describe_leg_failure(ssl_code(SSL_R_TLSV1_ALERT_UNKNOWN_CA));
  EXPECT_EQ(alert.cause, "tls_alert");
  EXPECT_EQ(alert.detail, "unknown CA");
  EXPECT_EQ(describe_leg_failure(ssl_code(SSL_R_SSLV3_ALERT_BAD_RECORD_MAC)).detail, "bad record mac");
  const auto local = describe_leg_failure(ssl_code(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
  EXPECT_EQ(local.cause, "tls_error");
  EXPECT_EQ(local.detail, "decryption failed or bad record mac");
}

}  // namespace
}  // namespace imapscope::transport
