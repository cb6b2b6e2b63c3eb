#include "proxy/transport/leg_failure.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <asio/error.hpp>
#include <asio/ssl/error.hpp>

namespace imapscope::transport {

LegFailure describe_leg_failure(const asio::error_code& ec) {
  if (ec == asio::error::connection_reset) return {"reset", ec.message()};
  if (ec == asio::error::broken_pipe) return {"broken_pipe", ec.message()};
  if (ec == asio::error::timed_out) return {"timed_out", ec.message()};
  if (ec == asio::error::connection_aborted) return {"aborted", ec.message()};
  if (ec == asio::error::host_unreachable || ec == asio::error::network_unreachable) return {"unreachable", ec.message()};
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return {"eof", ""};
  if (ec.category() == asio::error::get_ssl_category()) {
    const auto code = static_cast<unsigned long>(static_cast<unsigned int>(ec.value()));
    const int reason = ERR_GET_REASON(code);
    // An alert the peer sent is an error whose reason is the alert's code + 1000.
    if (ERR_GET_LIB(code) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
      return {"tls_alert", SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET)};
    }
    const char* text = ERR_reason_error_string(code);
    return {"tls_error", text != nullptr ? text : ec.message()};
  }
  return {"other", ec.message()};
}

}  // namespace imapscope::transport
