#include "server/listener.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <cerrno>

#include "server/net.hpp"

namespace membraned::server {

namespace {

// The process or the system has no descriptor (or socket memory) left for another connection.
bool out_of_descriptors(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  const int value = ec.value();
  return value == EMFILE || value == ENFILE || value == ENOBUFS || value == ENOMEM;
}

}  // namespace

Listener::Listener(net::io_context& ioc, OnConnection on_connection, Log log)
    : ioc_(ioc),
      acceptor_(net::make_strand(ioc)),
      pause_(acceptor_.get_executor()),
      on_connection_(std::move(on_connection)),
      log_(std::move(log)) {}

core::Status Listener::listen(const tcp::endpoint& endpoint, const std::string& description) {
  boost::system::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return core::Error::unavailable("cannot listen on " + description + ": " + ec.message());
  return core::ok_status();
}

void Listener::accept() {
  // Each connection gets a strand of its own.
  acceptor_.async_accept(net::make_strand(ioc_), [this](boost::system::error_code ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void Listener::on_accept(boost::system::error_code ec, tcp::socket socket) {
  if (ec) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (out_of_descriptors(ec)) {
      if (!starved_ && log_) log_("accept: " + ec.message() + "; new connections wait until some close");
      starved_ = true;
      pause_.expires_after(kAcceptPause);
      return pause_.async_wait([this](boost::system::error_code waited) {
        if (!waited && acceptor_.is_open()) accept();
      });
    }
    return accept();  // the peer gave up before it was accepted: keep serving the others
  }
  starved_ = false;
  // Answers are small and written whole: without TCP_NODELAY, Nagle's algorithm and the peer's
  // delayed ACK add ~40 ms after a TLS 1.3 handshake's session tickets.
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  on_connection_(std::move(socket));
  accept();
}

void Listener::close() {
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    pause_.cancel();
  });
}

std::uint16_t Listener::port() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

}  // namespace membraned::server
