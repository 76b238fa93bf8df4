// The short names every Asio unit of server/ uses for Boost.Asio and Boost.Beast, and the one
// conversion of an Asio address into core's (for the address policy and the loopback rule).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>

#include "core/address_policy.hpp"

namespace boost::asio::ssl {}
namespace boost::beast::http {}

namespace membraned::server {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

inline core::IpAddress to_ip_address(const net::ip::address& address) {
  core::IpAddress ip;
  ip.v4 = address.is_v4();
  if (ip.v4) {
    auto bytes = address.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin());
  } else {
    auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin());
  }
  return ip;
}

}  // namespace membraned::server
