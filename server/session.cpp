#include "server/session.hpp"

namespace membraned::server {

template class HttpSession<PlainSession>;
template class HttpSession<TlsSession>;

PlainSession::PlainSession(ServerContext& context, tcp::socket&& socket, bool metrics_only, ConnectionGate::Slot slot)
    : HttpSession(context, metrics_only, std::move(slot)), stream_(std::move(socket)) {}

void PlainSession::run() {
  net::dispatch(stream_.get_executor(), beast::bind_front_handler(&PlainSession::do_read, shared_from_this()));
}

void PlainSession::do_close() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.socket().close(ec);
}

TlsSession::TlsSession(ServerContext& context, tcp::socket&& socket, std::shared_ptr<ssl::context> tls,
                       ConnectionGate::Slot slot)
    : HttpSession(context, /*metrics_only=*/false, std::move(slot)),
      tls_(std::move(tls)),
      stream_(std::move(socket), *tls_) {}

void TlsSession::run() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    self->expires_after(self->context_.settings.idle_timeout);
    self->stream_.async_handshake(ssl::stream_base::server, beast::bind_front_handler(&TlsSession::on_handshake, self));
  });
}

void TlsSession::on_handshake(beast::error_code ec) {
  if (ec) {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
    return;
  }
  do_read();
}

void TlsSession::do_close() {
  if (closing_) return;
  closing_ = true;
  beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
  stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
    beast::error_code ec;
    beast::get_lowest_layer(self->stream_).socket().close(ec);
  });
}

}  // namespace membraned::server
