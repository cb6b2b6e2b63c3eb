// Opens the server leg: resolve, connect (addresses in order, each with a timeout),
// the PROXY header if configured, TLS (implicit, or the proxy's own STARTTLS), the
// greeting, and the ID that forwards the client's address if configured.
#pragma once

#include <memory>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ssl/context.hpp>

#include "proxy/session/close_reason.hpp"
#include "proxy/transport/client_address.hpp"
#include "proxy/transport/settings.hpp"
#include "proxy/transport/stream.hpp"

namespace imapscope::transport {

struct UpstreamConnection {
  std::unique_ptr<Stream> stream;  // null on failure
  std::string greeting;            // bytes read so far: the greeting line (and maybe more)
  bool did_starttls = false;       // the greeting was read before TLS
  std::string peer;                // address connected to
  session::CloseReason failure = session::CloseReason::UpstreamUnavailable;
  std::string error;               // why it failed, for the log and the client's BYE
  std::string notice;              // worth a log line, not fatal (the server refused the forwarding ID)
};

// session_id goes into Dovecot's x-session-id, so that both logs name the session.
asio::awaitable<UpstreamConnection> connect_upstream(const UpstreamSettings& settings, asio::ssl::context* tls,
                                                     const Timeouts& timeouts, const ClientAddresses& client,
                                                     std::uint64_t session_id);

}  // namespace imapscope::transport
