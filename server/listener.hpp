// One accepting socket and its accept loop, as in Beast's advanced server: used for the service's
// port and for the metrics port, each handing its connections to a function of its own.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "core/result.hpp"

namespace membraned::server {

class Listener {
 public:
  using OnConnection = std::function<void(boost::asio::ip::tcp::socket)>;

  Listener(boost::asio::io_context& ioc, OnConnection on_connection);

  // Opens, binds and listens; `description` names it in the error ("HOST:PORT for metrics").
  core::Status listen(const boost::asio::ip::tcp::endpoint& endpoint, const std::string& description);
  void accept();  // starts the accept loop
  void close();   // stops it (from any thread)
  std::uint16_t port() const;

 private:
  void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  OnConnection on_connection_;
};

}  // namespace membraned::server
