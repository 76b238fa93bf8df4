// The upstream's side of an invocation (server/invocation.cpp, the relay): a requester invokes a
// uri capability through a session, and the upstream answers with the input's bytes (then ends
// its side). The input's first byte chooses the request: bit 0, HEAD instead of POST; bit 1, a
// second request (GET /healthz) pipelined behind it. Properties, against Beast's own reading of
// the same bytes as the reference:
//   - what the requester gets is well-formed HTTP/1.1;
//   - an answer the reference reads whole reaches the requester whole: the same status, and the
//     same body (none for HEAD, 204 and 304), and the connection then serves the next request;
//   - an answer it cannot read becomes a 502/504 before anything else was sent, or a cut one
//     (and a closed connection) after;
//   - the connection ends without waiting for a deadline.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/fuzz/support/fuzz_check.hpp"
#include "tests/fuzz/support/http_feed.hpp"
#include "tests/fuzz/support/server_fixture.hpp"

namespace {

namespace http = boost::beast::http;
using membraned::fuzz::ServerFixture;
using membraned::fuzz::feed;

struct Answer {
  unsigned status = 0;
  std::string body;
};

// The upstream's final answer as Beast reads it (interim 1xx answers skipped, the end of the
// stream ending a body without framing), or nullopt when it is malformed or cut short.
std::optional<Answer> reference_answer(std::string_view bytes, bool head) {
  while (true) {
    http::response_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(bytes.size());  // no body is longer than the input (string_body reserves it)
    if (head) parser.skip(true);
    boost::beast::error_code ec;
    const std::size_t used = feed(parser, bytes, ec);
    if (!ec && !parser.is_done() && parser.got_some()) parser.put_eof(ec);
    if (ec || !parser.is_done()) return std::nullopt;
    const unsigned status = parser.get().result_int();
    if (status >= 100 && status < 200) {
      bytes.remove_prefix(used);
      continue;
    }
    return Answer{status, parser.get().body()};
  }
}

// The answers the requester got, in order: whole ones, then whether a cut one followed.
struct Received {
  std::vector<Answer> whole;
  bool cut = false;
};

Received received(std::string_view written, bool head_first) {
  Received out;
  while (!written.empty()) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(written.size());
    if (out.whole.empty() && head_first) parser.skip(true);
    boost::beast::error_code ec;
    const std::size_t used = feed(parser, written, ec);
    if (ec == http::error::body_limit) ec = {};  // announces more than is left: cut short
    FUZZ_CHECK(!ec);                             // well-formed HTTP/1.1
    if (!parser.is_done()) {
      out.cut = true;
      return out;
    }
    out.whole.push_back({parser.get().result_int(), parser.get().body()});
    written.remove_prefix(used);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool head = (data[0] & 1) != 0;
  const bool pipelined = (data[0] & 2) != 0;
  const std::string_view answer = membraned::fuzz::as_text(data + 1, size - 1);

  ServerFixture& fixture = ServerFixture::get();
  fixture.pool_upstream(answer);
  std::string request = std::string(head ? "HEAD" : "POST") +
                        " /?q=1 HTTP/1.1\r\nHost: membraned\r\nAuthorization: Bearer " +
                        fixture.tokens().sigv4 + "\r\nContent-Length: 2\r\n\r\n{}";
  if (pipelined) request += "GET /healthz HTTP/1.1\r\nHost: membraned\r\n\r\n";

  auto connection = fixture.connect();
  connection.client->write_some(boost::asio::buffer(request));
  connection.session->stream().close_remote();
  connection.session->run();
  fixture.run();

  membraned::fuzz::show("service wrote", connection.client->str());
  FUZZ_CHECK(connection.session->closed());
  FUZZ_CHECK(!connection.session->expired());
  const Received got = received(connection.client->str(), head);
  const std::optional<Answer> expected = reference_answer(answer, head);
  if (expected) {
    FUZZ_CHECK(!got.whole.empty());
    FUZZ_CHECK(got.whole[0].status == expected->status);
    const bool bodiless = head || expected->status == 204 || expected->status == 304;
    FUZZ_CHECK(got.whole[0].body == (bodiless ? std::string() : expected->body));
    if (pipelined) {
      FUZZ_CHECK(got.whole.size() == 2);
      FUZZ_CHECK(got.whole[1].status == 200);
    }
  } else if (!got.whole.empty()) {
    // Nothing of the upstream's went out: the service answered for it, and the connection
    // carried on.
    FUZZ_CHECK(got.whole[0].status == 502 || got.whole[0].status == 504);
    if (pipelined) FUZZ_CHECK(got.whole.size() == 2 && got.whole[1].status == 200);
  } else {
    FUZZ_CHECK(got.cut);
  }

  fixture.reset();
  return 0;
}
