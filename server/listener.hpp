// One accepting socket and its accept loop, as in Beast's advanced server: used for the service's
// port and for the metrics port, each handing its connections to a function of its own.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <chrono>
#include <functional>
#include <string>

#include "core/result.hpp"

namespace membraned::server {

class Listener {
 public:
  using OnConnection = std::function<void(boost::asio::ip::tcp::socket)>;
  using Log = std::function<void(const std::string& line)>;

  // While the process has no descriptor left (EMFILE, ENFILE) the listener stops accepting for
  // kAcceptPause at a time instead of failing again at once (which spins a core): the waiting
  // connections stay in the kernel's backlog, and one log line says so.
  static constexpr std::chrono::milliseconds kAcceptPause{100};

  Listener(boost::asio::io_context& ioc, OnConnection on_connection, Log log = {});

  // Opens, binds and listens; `description` names it in the error ("HOST:PORT for metrics").
  core::Status listen(const boost::asio::ip::tcp::endpoint& endpoint, const std::string& description);
  void accept();  // starts the accept loop
  void close();   // stops it (from any thread)
  std::uint16_t port() const;

 private:
  void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer pause_;
  OnConnection on_connection_;
  Log log_;
  bool starved_ = false;  // paused for descriptors since the last accepted connection
};

}  // namespace membraned::server
