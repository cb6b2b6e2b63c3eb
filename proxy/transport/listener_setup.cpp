#include "proxy/transport/listener_setup.hpp"

#include <stdexcept>

namespace imapscope::transport {

PreparedListener prepare_listener(const ListenerSettings& listener) {
  const auto where = "listener " + listener.name + ": ";
  PreparedListener prepared;
  asio::error_code ec;
  const auto address = asio::ip::make_address(listener.listen.host, ec);
  if (ec) throw std::runtime_error(where + "listen address must be an IP address: " + listener.listen.host);
  prepared.endpoint = {address, listener.listen.port};
  try {
    if (!listener.certificates.empty()) {
      prepared.client_tls = std::make_shared<ServerTls>(listener.certificates, listener.tls_policy);
    } else if (listener.implicit_tls) {
      throw std::runtime_error("implicit TLS needs a certificate and key");
    }
    if (listener.upstream.tls != UpstreamTls::None) {
      prepared.upstream_tls = make_client_tls_context(listener.upstream.ca_file, listener.upstream.verify);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(where + e.what());
  }
  return prepared;
}

}  // namespace imapscope::transport
