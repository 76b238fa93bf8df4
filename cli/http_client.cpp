#include "cli/http_client.hpp"

#include <netdb.h>
#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/tls_verification.hpp"
#include "core/version.hpp"

namespace membraned::cli {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;

core::Error failure(std::string message) { return core::Error::invalid("request", std::move(message)); }

std::string seconds_text(std::chrono::milliseconds t) {
  char buf[32];
  if (t.count() % 1000 == 0) {
    std::snprintf(buf, sizeof buf, "%lld s", static_cast<long long>(t.count() / 1000));
  } else {
    std::snprintf(buf, sizeof buf, "%.3g s", static_cast<double>(t.count()) / 1000.0);
  }
  return buf;
}

std::string where(const HttpTarget& t) {
  return (t.plain_http ? "http://" : "https://") + t.host_header;
}

// Starts one asynchronous operation and runs the context until it completes. The operations
// bound their own time: tcp_stream's expiry (connect, handshake, read, write) closes the socket.
template <typename Initiate>
beast::error_code run(net::io_context& ioc, Initiate&& initiate) {
  beast::error_code result = net::error::operation_aborted;
  initiate([&result](beast::error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

// getaddrinfo on a thread of its own, so that a slow resolver cannot outlast the timeout: when it
// does, the thread is left to finish on its own and its result is dropped.
core::Result<std::vector<tcp::endpoint>> resolve(const HttpTarget& t, std::chrono::milliseconds timeout) {
  std::vector<tcp::endpoint> out;
  if (t.ip_literal) {
    beast::error_code ec;
    auto address = net::ip::make_address(t.host, ec);
    if (ec) return failure("invalid address " + t.host);
    out.emplace_back(address, t.port);
    return out;
  }
  struct State {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    int rc = 0;
    std::vector<tcp::endpoint> endpoints;
  };
  auto state = std::make_shared<State>();
  std::thread([state, host = t.host, port = t.port] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
    std::vector<tcp::endpoint> endpoints;
    for (addrinfo* ai = list; rc == 0 && ai; ai = ai->ai_next) {
      if (ai->ai_family == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
        net::ip::address_v4::bytes_type bytes;
        std::memcpy(bytes.data(), &sin->sin_addr, bytes.size());
        endpoints.emplace_back(net::ip::address_v4(bytes), port);
      } else if (ai->ai_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
        net::ip::address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), &sin6->sin6_addr, bytes.size());
        endpoints.emplace_back(net::ip::address_v6(bytes, sin6->sin6_scope_id), port);
      }
    }
    if (list) ::freeaddrinfo(list);
    std::lock_guard lock(state->mutex);
    state->rc = rc;
    state->endpoints = std::move(endpoints);
    state->done = true;
    state->done_cv.notify_all();
  }).detach();
  std::unique_lock lock(state->mutex);
  if (!state->done_cv.wait_for(lock, timeout, [&] { return state->done; })) {
    return failure("timed out after " + seconds_text(timeout) + " resolving " + t.host);
  }
  if (state->rc != 0) return failure("cannot resolve " + t.host + ": " + ::gai_strerror(state->rc));
  if (state->endpoints.empty()) return failure("cannot resolve " + t.host + ": no address");
  return std::move(state->endpoints);
}

bool is_loopback(const net::ip::address& a) {
  if (a.is_v4()) return a.to_v4().is_loopback();
  const auto v6 = a.to_v6();
  return v6.is_loopback() || (v6.is_v4_mapped() && net::ip::make_address_v4(net::ip::v4_mapped, v6).is_loopback());
}

std::string step_error(const beast::error_code& ec, const std::string& step, const HttpTarget& t,
                       std::chrono::milliseconds timeout) {
  if (ec == beast::error::timeout) return "timed out after " + seconds_text(timeout) + " " + step + " " + where(t);
  return step + " " + where(t) + ": " + ec.message();
}

template <typename Stream>
core::Result<HttpResponseHead> exchange(net::io_context& ioc, Stream& stream, const HttpTarget& t,
                                        const HttpRequest& request, const HttpOptions& options,
                                        const HeadSink& on_head, const BodySink& on_body) {
  auto& lowest = beast::get_lowest_layer(stream);

  http::request<http::string_body> req;
  http::verb verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) {
    req.method_string(request.method);
  } else {
    req.method(verb);
  }
  req.target(request.target);
  req.version(11);
  bool user_agent = false;
  for (const auto& h : request.headers) {
    if (core::iequals(h.name, "user-agent")) user_agent = true;
    req.insert(h.name, h.value);
  }
  req.set(http::field::host, t.host_header);
  if (!user_agent) req.set(http::field::user_agent, std::string("capi/") + core::kVersion);
  req.set(http::field::connection, "close");
  req.body() = request.body;
  req.prepare_payload();

  lowest.expires_after(options.timeout);
  if (auto ec = run(ioc, [&](auto handler) { http::async_write(stream, req, std::move(handler)); })) {
    return failure(step_error(ec, "sending the request to", t, options.timeout));
  }

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(boost::none);
  if (verb == http::verb::head) parser.skip(true);
  lowest.expires_after(options.timeout);
  if (auto ec = run(ioc, [&](auto handler) { http::async_read_header(stream, buffer, parser, std::move(handler)); })) {
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == ssl::error::stream_truncated) {
      return failure(where(t) + " closed the connection without answering");
    }
    return failure(step_error(ec, "reading the answer of", t, options.timeout));
  }
  HttpResponseHead head;
  const auto& res = parser.get();
  head.status = res.result_int();
  head.reason = std::string(res.reason());
  head.version = res.version();
  for (const auto& field : res) {
    head.headers.push_back({std::string(field.name_string()), std::string(field.value())});
  }
  if (on_head) on_head(head);

  std::vector<char> chunk(kReadChunk);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    lowest.expires_after(options.timeout);
    auto ec = run(ioc, [&](auto handler) { http::async_read(stream, buffer, parser, std::move(handler)); });
    const std::size_t n = chunk.size() - parser.get().body().size;
    if (n > 0 && on_body && !on_body(std::string_view(chunk.data(), n))) {
      return failure("the answer of " + where(t) + " is larger than " + std::to_string(options.max_body) + " bytes");
    }
    if (ec == http::error::need_buffer) continue;
    if (ec == ssl::error::stream_truncated && parser.need_eof()) {
      beast::error_code eof_ec;
      parser.put_eof(eof_ec);  // a body that ends at the end of the connection
      if (!eof_ec) break;
    }
    if (ec) {
      if (ec == http::error::partial_message || ec == ssl::error::stream_truncated) {
        return failure(where(t) + " closed the connection before the end of its answer");
      }
      return failure(step_error(ec, "reading the answer of", t, options.timeout));
    }
  }
  beast::error_code ignored;
  lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return head;
}

}  // namespace

core::Result<HttpResponseHead> http_exchange(const HttpTarget& t, const HttpRequest& request,
                                             const HttpOptions& options, const HeadSink& on_head,
                                             const BodySink& on_body) {
  auto endpoints = resolve(t, options.timeout);
  if (!endpoints) return endpoints.error();
  if (t.plain_http) {
    // The authority was checked as loopback already; a name must also resolve to loopback only.
    std::erase_if(*endpoints, [](const tcp::endpoint& e) { return !is_loopback(e.address()); });
    if (endpoints->empty()) {
      return failure("plain HTTP is refused: " + t.host + " does not resolve to a loopback address");
    }
  }

  net::io_context ioc;
  auto connect = [&](beast::tcp_stream& stream) -> core::Status {
    stream.expires_after(options.timeout);
    if (auto ec = run(ioc, [&](auto handler) { stream.async_connect(*endpoints, std::move(handler)); })) {
      std::string message = step_error(ec, "connecting to", t, options.timeout);
      if (ec == net::error::connection_refused) message += " (is membraned running there?)";
      return failure(message);
    }
    return core::ok_status();
  };

  if (t.plain_http) {
    beast::tcp_stream stream(ioc);
    if (auto s = connect(stream); !s) return s.error();
    return exchange(ioc, stream, t, request, options, on_head, on_body);
  }

  ssl::context ctx(ssl::context::tls_client);
  if (auto s = core::configure_tls_client(ctx.native_handle()); !s) return failure(s.error().message);
  beast::error_code ec;
  if (t.ca_pem) {
    ctx.add_certificate_authority(net::buffer(*t.ca_pem), ec);
    if (ec) return failure("the trusted CA given for " + t.host_header + " is not a PEM certificate");
  } else {
    ctx.set_default_verify_paths(ec);
    if (ec) return failure("cannot load the system's trusted CAs: " + ec.message());
  }

  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  SSL* handle = stream.native_handle();
  if (auto s = core::verify_peer_name(handle, t.host); !s) return failure(s.error().message);
  if (auto s = connect(beast::get_lowest_layer(stream)); !s) return s.error();
  beast::get_lowest_layer(stream).expires_after(options.timeout);
  ec = run(ioc, [&](auto handler) { stream.async_handshake(ssl::stream_base::client, std::move(handler)); });
  if (ec) {
    const long verify = SSL_get_verify_result(handle);
    if (ec != beast::error::timeout && verify != X509_V_OK) {
      return failure("the TLS certificate of " + where(t) + " is not trusted (" +
                     X509_verify_cert_error_string(verify) +
                     "); give its CA with --trustedCA-file-path");
    }
    std::string message = step_error(ec, "during the TLS handshake with", t, options.timeout);
    if (ec.message().find("wrong version number") != std::string::npos ||
        ec.message().find("packet length too long") != std::string::npos) {
      message += " (is it plain HTTP? capi uses HTTPS unless --plain-http is given, for a loopback service)";
    }
    return failure(message);
  }
  return exchange(ioc, stream, t, request, options, on_head, on_body);
}

core::Result<HttpResponse> http_fetch(const HttpTarget& target, const HttpRequest& request,
                                      const HttpOptions& options) {
  HttpResponse out;
  auto head = http_exchange(target, request, options, nullptr, [&](std::string_view piece) {
    if (options.max_body != 0 && out.body.size() + piece.size() > options.max_body) return false;
    out.body.append(piece);
    return true;
  });
  if (!head) return head.error();
  out.head = std::move(*head);
  return out;
}

}  // namespace membraned::cli
