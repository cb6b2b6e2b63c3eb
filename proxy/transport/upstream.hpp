// Opens the server leg: resolve, connect (addresses in order, each with a timeout),
// TLS (implicit, or the proxy's own STARTTLS), and read the greeting.
#pragma once

#include <memory>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ssl/context.hpp>

#include "proxy/session/close_reason.hpp"
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
};

asio::awaitable<UpstreamConnection> connect_upstream(const UpstreamSettings& settings, asio::ssl::context* tls,
                                                     const Timeouts& timeouts);

}  // namespace imapscope::transport
