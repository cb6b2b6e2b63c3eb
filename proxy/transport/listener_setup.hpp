// What start-up loads for a listener before it binds anything: the address to
// listen on, the client leg's certificates and keys, the upstream's CA file. The
// proxy and --check-config (which stops there, as `nginx -t`) share it, so what
// the check accepts starts.
#pragma once

#include <memory>

#include <asio/ip/tcp.hpp>

#include "proxy/transport/server_tls.hpp"
#include "proxy/transport/settings.hpp"
#include "proxy/transport/tls_context.hpp"

namespace imapscope::transport {

struct PreparedListener {
  asio::ip::tcp::endpoint endpoint;
  std::shared_ptr<ServerTls> client_tls;  // null: no TLS on the client leg
  TlsContextPtr upstream_tls;             // null: plain upstream
};

// Throws std::runtime_error("listener NAME: ...") naming the file or address and why.
PreparedListener prepare_listener(const ListenerSettings& listener);

}  // namespace imapscope::transport
