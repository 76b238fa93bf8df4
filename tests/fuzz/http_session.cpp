// The requester's side of the service (server/session.hpp, request_handler, request_dispatch,
// api, the store): the input is what a client sends on one connection, then its end of stream.
// Anything goes: pipelined requests, chunked bodies, 100-continue, oversized headers, methods and
// targets of every shape. Tokens the fuzzer cannot guess are written as placeholders (@CREATE@,
// @QUERY@, @EXPORT@, @INVOKE@, @CAP1@, @HEAD@; see support/server_fixture.hpp), so that inputs reach
// the management operations and invocations; an invocation is answered by an in-memory upstream.
// Properties: the connection ends without waiting for a deadline, and what the service wrote is
// a sequence of well-formed HTTP/1.1 answers (the last possibly cut short, when the connection
// closed in the middle of it).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/support/fuzz_check.hpp"
#include "tests/fuzz/support/http_feed.hpp"
#include "tests/fuzz/support/server_fixture.hpp"

namespace {

namespace http = boost::beast::http;
using membraned::fuzz::ServerFixture;
using membraned::fuzz::feed;

// Whether each request the service could read, in order, is a HEAD (its answer has no body,
// whatever its Content-Length says), as the session's own parser reads them.
std::vector<bool> head_requests(std::string_view input) {
  std::vector<bool> heads;
  while (!input.empty()) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(input.size());  // no body is longer than the input (string_body reserves it)
    boost::beast::error_code ec;
    const std::size_t used = feed(parser, input, ec);
    if (parser.is_header_done()) heads.push_back(parser.get().method() == http::verb::head);
    if (ec || !parser.is_done()) break;
    input.remove_prefix(used);
  }
  return heads;
}

// What the service wrote must be whole answers, the last possibly cut short; a malformed one is
// a violation. Interim answers (100 Continue) answer no request of their own.
void check_answers(std::string_view written, const std::vector<bool>& heads) {
  std::size_t request = 0;
  while (!written.empty()) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(written.size());
    if (request < heads.size() && heads[request]) parser.skip(true);
    boost::beast::error_code ec;
    const std::size_t used = feed(parser, written, ec);
    if (ec == http::error::body_limit) return;  // announces more than is left: cut short
    FUZZ_CHECK(!ec);
    if (!parser.is_done()) return;  // cut short
    if (parser.get().result_int() >= 200) ++request;
    written.remove_prefix(used);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ServerFixture& fixture = ServerFixture::get();
  const std::string input = fixture.substitute(membraned::fuzz::as_text(data, size));
  // The answer of the upstream, for an invocation among the requests.
  fixture.pool_upstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok");

  auto connection = fixture.connect();
  connection.client->write_some(boost::asio::buffer(input));
  connection.session->stream().close_remote();  // the client sent everything: end of stream
  connection.session->run();
  fixture.run();

  membraned::fuzz::show("service wrote", connection.client->str());
  FUZZ_CHECK(connection.session->closed());
  FUZZ_CHECK(!connection.session->expired());
  check_answers(connection.client->str(), head_requests(input));

  fixture.reset();
  return 0;
}
