// Reading what the service wrote with Beast's own parsers, for the server targets' properties.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <cstddef>
#include <string_view>

namespace membraned::fuzz {

// Feeds `bytes` to `parser` as far as it goes: the bytes used, and an error other than need_more.
template <class Parser>
std::size_t feed(Parser& parser, std::string_view bytes, boost::beast::error_code& ec) {
  std::size_t used = 0;
  while (!parser.is_done()) {
    const std::size_t n = parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == boost::beast::http::error::need_more) ec = {};
    if (ec || n == 0) break;
  }
  return used;
}

}  // namespace membraned::fuzz
