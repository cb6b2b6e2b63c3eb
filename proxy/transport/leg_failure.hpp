// Why a leg's read or write failed, in words an administrator can act on: the
// session_end line and the transcript say "reset" or "tls_alert: bad record mac"
// where the close reason alone says server_error.
#pragma once

#include <string>
#include <string_view>

#include <asio/error_code.hpp>

namespace imapscope::transport {

struct LegFailure {
  std::string_view cause;  // a word from a small set: reset, broken_pipe, timed_out, tls_alert, tls_error, ...
  std::string detail;      // the system's or OpenSSL's words ("bad record mac"); may be empty
};

LegFailure describe_leg_failure(const asio::error_code& ec);

}  // namespace imapscope::transport
