// One connection of a requester: reads requests one after the other (keep-alive) and writes
// their answers, as Beast's advanced server does; what a request means is the RequestHandler's
// business. CRTP over the stream: Derived (PlainSession, TlsSession, or a test's session over
// beast::test::stream) supplies
//   stream()            the stream to read from and write to
//   expires_after(d)    the deadline of the next operation on it
//   timed_out(ec)       whether `ec` says that deadline passed
//   cancel()            cancels what is pending (a graceful stop, while idle)
//   do_close()          closes the connection
// and must derive from std::enable_shared_from_this<Derived>.
#pragma once

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "core/http.hpp"
#include "server/invocation.hpp"
#include "server/net.hpp"
#include "server/request_handler.hpp"
#include "server/server_context.hpp"

namespace membraned::server {

template <class Derived>
class HttpSession : public RequesterSide, public Stoppable {
 public:
  // Beast reads at most the free capacity (at least 512 bytes): room for a typical request's
  // header and a small body means one read per request instead of several.
  static constexpr std::size_t kBufferReserve = 8 * 1024;

  // A metrics-only session (the --metrics-listen listener) serves /metrics and /healthz and
  // dispatches no capability.
  // `slot`: this connection's place under the connection limits, given back when it ends.
  //
  // The read buffer holds what the parser cannot use yet: a header block, a chunk's size line
  // with its extensions, a trailer section, each only whole. Beast's header and body limits do
  // not count the last two, so the buffer's own limit (--header-limit) is what bounds them.
  HttpSession(ServerContext& context, bool metrics_only, ConnectionGate::Slot slot = {})
      : context_(context), slot_(std::move(slot)), buffer_(context.settings.header_limit), handler_(context, metrics_only, slot_.address()) {
    buffer_.reserve(std::min(kBufferReserve, buffer_.max_size()));
    ++context_.active_sessions;
    context_.metrics.connection_opened();
  }
  ~HttpSession() override {
    context_.metrics.connection_closed();
    --context_.active_sessions;
  }

  // On the session's strand: an idle connection closes now; a busy one after its answer.
  void on_server_stopping() override {
    net::post(derived().stream().get_executor(), [self = derived().shared_from_this()] {
      if (self->idle_) self->derived().cancel();
    });
  }

  // The relay's view of this connection (server/invocation.hpp).
  net::any_io_executor requester_executor() override { return derived().stream().get_executor(); }
  bool answer_begins(RelayedHeader& header) override {
    header.set(kRequestIdField, handler_.request_id());  // ours replaces any the upstream sent
    // Only the service's own 409 names the operation a capability performs: a client must be
    // able to take that header for the truth that nothing was done.
    header.erase(core::kCapabilityOperationHeader);
    header.erase(core::kMembranedErrorHeader);
    handler_.body_freed();  // the relay dropped the body when the upstream's answer began
    handler_.relay_begins(request().method_string(), static_cast<int>(header.result_int()));
    return keep_alive();
  }
  void write_answer(RelayedAnswer& answer, std::function<void(beast::error_code)> done) override {
    derived().expires_after(context_.settings.write_timeout);
    http::async_write(derived().stream(), answer,
                      [self = derived().shared_from_this(), done = std::move(done)](beast::error_code ec, std::size_t) {
                        done(ec);
                      });
  }
  void answer_done(bool keep_alive_after, std::uint64_t body_bytes) override {
    handler_.relay_ended(body_bytes);
    if (!keep_alive_after) return derived().do_close();
    do_read();
  }
  void answer_failed(api::Response failure) override { send(json_answer(failure), keep_alive()); }
  void answer_broken(std::uint64_t body_bytes) override {
    handler_.body_freed();
    handler_.relay_ended(body_bytes);
    derived().do_close();
  }

 protected:
  Derived& derived() { return static_cast<Derived&>(*this); }

  void do_read() {
    if (context_.stopping) return derived().do_close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(context_.settings.header_limit));
    // The capability, known once the headers are in, decides how large a body may be.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    idle_ = true;
    derived().expires_after(context_.settings.idle_timeout);
    http::async_read_header(derived().stream(), buffer_, *parser_,
                            beast::bind_front_handler(&HttpSession::on_header, derived().shared_from_this()));
  }

  ServerContext& context_;

 private:
  ConnectionGate::Slot slot_;
  Request& request() { return parser_->get(); }
  // Whether the connection may stay open after this answer.
  bool keep_alive() { return request().keep_alive() && !context_.stopping; }

  void on_header(beast::error_code ec, std::size_t) {
    idle_ = false;
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted || derived().timed_out(ec) ||
        ec == net::error::eof || ec == net::error::connection_reset) {
      return derived().do_close();
    }
    handler_.begin(Clock::now());
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return reply_and_close(api::Api::error_response(431, "request headers are too large"));
    }
    if (ec) return reply_and_close(api::Api::error_response(400, "malformed HTTP request"));
    if (auto refused = handler_.refuse_header(request())) return reply_and_close(std::move(*refused));
    const auto length = parser_->content_length();
    handler_.after_header(request(), length ? std::optional<std::uint64_t>(*length) : std::nullopt,
                          derived().stream().get_executor(),
                          [self = derived().shared_from_this()](BodyPlan plan) { self->on_body_plan(std::move(plan)); });
  }

  void on_body_plan(BodyPlan plan) {
    if (plan.refuse) return reply_and_close(std::move(*plan.refuse));
    parser_->body_limit(plan.limit);
    if (!beast::iequals(request()[http::field::expect], "100-continue")) return read_body();
    // The client waits for this before sending its body (curl does, for bodies over 1 KiB).
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    derived().expires_after(context_.settings.write_timeout);
    net::async_write(derived().stream(), net::buffer(kContinue),
                     [self = derived().shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->derived().do_close();
                       self->read_body();
                     });
  }

  void read_body() {
    derived().expires_after(context_.settings.read_timeout);
    http::async_read(derived().stream(), buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::on_body, derived().shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec == http::error::body_limit) return reply_and_close(handler_.too_large());
    if (ec == http::error::buffer_overflow) return reply_and_close(oversized_framing_answer());
    if (derived().timed_out(ec)) {
      return reply_and_close(api::Api::error_response(408, "the request body did not arrive in time"));
    }
    // A body the parser refused (a chunk size that is no number, a bad extension or trailer) is
    // answered; a connection that ended or broke (the client left mid-body) is closed.
    if (ec && ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
        ec != http::error::partial_message && ec != http::error::end_of_stream) {
      return reply_and_close(api::Api::error_response(400, "malformed HTTP request"));
    }
    if (ec) return derived().do_close();
    handler_.after_body(request(), derived().stream().get_executor(),
                        [self = derived().shared_from_this()](Outcome outcome) { self->on_outcome(std::move(outcome)); });
  }

  void on_outcome(Outcome outcome) {
    if (auto* answer = std::get_if<Answer>(&outcome)) return send(std::move(*answer), keep_alive());
    std::shared_ptr<RequesterSide> self = derived().shared_from_this();
    start_invocation(context_, std::move(self), handler_.invoked_config(), handler_.invoked_tenant(),
                     std::move(std::get<Relay>(outcome).upstream), std::move(request().body()),
                     request().method() == http::verb::head, handler_.started(), handler_.send_check());
  }

  void reply_and_close(api::Response response) { send(json_answer(response), false); }

  // The read buffer filled up with framing of a chunked body that the parser needs whole.
  api::Response oversized_framing_answer() {
    const std::string_view unparsed(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    if (oversized_framing(unparsed) == OversizedFraming::trailers) {
      return api::Api::error_response(431, "request trailers are too large");
    }
    return api::Api::error_response(413, "request chunk header is too large");
  }

  void send(Answer answer, bool keep_alive_after) {
    const bool head = parser_->is_header_done() && request().method() == http::verb::head;
    std::string().swap(request().body());  // answered (or moved to a relay that dropped it)
    handler_.body_freed();
    response_.emplace(static_cast<http::status>(answer.status), 11);
    response_->set(http::field::content_type, answer.content_type);
    response_->set(http::field::cache_control, "no-store");
    response_->set(kRequestIdField, handler_.request_id());
    if (answer.retry_after) response_->set(http::field::retry_after, std::to_string(*answer.retry_after));
    if (!answer.capability_operation.empty()) {
      response_->set(core::kCapabilityOperationHeader, answer.capability_operation);
    }
    if (answer.status >= 400) response_->set(core::kMembranedErrorHeader, "true");
    // RFC 6750 §3: a 401 names the scheme it wants.
    if (answer.status == 401) response_->set(http::field::www_authenticate, "Bearer realm=\"membraned\"");
    const std::uint64_t body_bytes = head ? 0 : answer.body.size();
    if (head) {
      response_->content_length(answer.body.size());
    } else {
      response_->body() = std::move(answer.body);
      response_->prepare_payload();
    }
    response_->keep_alive(keep_alive_after);
    handler_.answered(
        parser_->is_header_done() ? std::optional(std::string_view(request().method_string())) : std::nullopt,
        answer.status, body_bytes, answer.detail);
    derived().expires_after(context_.settings.write_timeout);
    http::async_write(derived().stream(), *response_,
                      beast::bind_front_handler(&HttpSession::on_write, derived().shared_from_this(), keep_alive_after));
  }

  void on_write(bool keep_alive_after, beast::error_code ec, std::size_t) {
    response_.reset();
    if (ec || !keep_alive_after) return derived().do_close();
    do_read();
  }

  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  RequestHandler handler_;
  bool idle_ = false;
};

class PlainSession : public HttpSession<PlainSession>, public std::enable_shared_from_this<PlainSession> {
 public:
  PlainSession(ServerContext& context, tcp::socket&& socket, bool metrics_only = false,
               ConnectionGate::Slot slot = {});
  void run();
  beast::tcp_stream& stream() { return stream_; }
  void expires_after(std::chrono::steady_clock::duration d) { stream_.expires_after(d); }
  static bool timed_out(beast::error_code ec) { return ec == beast::error::timeout; }
  void cancel() { stream_.cancel(); }
  void do_close();

 private:
  beast::tcp_stream stream_;
};

class TlsSession : public HttpSession<TlsSession>, public std::enable_shared_from_this<TlsSession> {
 public:
  // `tls`: the certificate and key this connection is served with, kept for its whole life (a
  // reload on SIGHUP gives new connections another).
  TlsSession(ServerContext& context, tcp::socket&& socket, std::shared_ptr<ssl::context> tls,
             ConnectionGate::Slot slot = {});
  void run();
  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  void expires_after(std::chrono::steady_clock::duration d) { beast::get_lowest_layer(stream_).expires_after(d); }
  static bool timed_out(beast::error_code ec) { return ec == beast::error::timeout; }
  void cancel() { beast::get_lowest_layer(stream_).cancel(); }
  void do_close();

 private:
  void on_handshake(beast::error_code ec);
  std::shared_ptr<ssl::context> tls_;  // before the stream, which uses it
  beast::ssl_stream<beast::tcp_stream> stream_;
  bool closing_ = false;
};

extern template class HttpSession<PlainSession>;
extern template class HttpSession<TlsSession>;

}  // namespace membraned::server
