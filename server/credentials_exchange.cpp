#include "server/credentials_exchange.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace membraned::server {

namespace {

class CredentialsExchange : public std::enable_shared_from_this<CredentialsExchange> {
 public:
  using Done = std::function<void(CredentialsHttpResult)>;

  CredentialsExchange(UpstreamClient& client, core::CredentialsCall call, std::chrono::milliseconds timeout,
                      std::size_t max_body, Done done)
      : client_(client), call_(std::move(call)), timeout_(timeout), done_(std::move(done)) {
    request_ = make_request(call_.method, call_.target, call_.headers, std::move(call_.body));
    parser_.body_limit(max_body);
    parser_.header_limit(16 * 1024);
  }

  void start() {
    deadline_ = Clock::now() + timeout_;
    UpstreamEndpoint endpoint{call_.connect_host, call_.port, call_.https, client_.default_tls()};
    if (call_.https && !endpoint.tls) return finish(core::Error::unavailable("no TLS client context"));
    client_.connect(std::move(endpoint), ConnectLimits{timeout_, deadline_}, /*checked=*/false,
                    [self = shared_from_this()](std::shared_ptr<UpstreamConnection> connection,
                                                std::optional<ConnectFailure> failure) {
                      if (failure) return self->fail(failure->ec, step_name(failure->step));
                      self->connection_ = std::move(connection);
                      self->write();
                    });
  }

 private:
  static std::string_view step_name(ConnectStep step) {
    switch (step) {
      case ConnectStep::resolve: return "its name could not be resolved";
      case ConnectStep::refused: return "its address is refused";
      case ConnectStep::connect: return "connect";
      case ConnectStep::handshake: return "TLS handshake";
    }
    return "connect";
  }

  void write() {
    connection_->lowest().expires_at(deadline_);
    connection_->with_stream([self = shared_from_this()](auto& stream) {
      http::async_write(stream, self->request_, beast::bind_front_handler(&CredentialsExchange::on_written, self));
    });
  }

  void on_written(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "sending the request");
    connection_->lowest().expires_at(deadline_);
    connection_->with_stream([self = shared_from_this()](auto& stream) {
      http::async_read(stream, self->buffer_, self->parser_, beast::bind_front_handler(&CredentialsExchange::on_read, self));
    });
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == http::error::body_limit) return finish(core::Error::unavailable("its answer is too large"));
    if (ec) return fail(ec, "reading the answer");
    CredentialsHttpAnswer answer;
    answer.status = parser_.get().result_int();
    answer.body = std::move(parser_.get().body());
    // Ends a TLS session without waiting for the peer's close_notify.
    connection_->close();
    finish(std::move(answer));
  }

  void fail(beast::error_code ec, std::string_view step) {
    if (connection_) connection_->close();
    if (ec == beast::error::timeout) {
      return finish(core::Error::unavailable("no answer within " + std::to_string(timeout_.count()) + " ms"));
    }
    finish(core::Error::unavailable(std::string(step) + ": " + ec.message()));
  }

  // The provider's continuation runs off the connection's strand: it may start the next call.
  void finish(CredentialsHttpResult result) {
    net::post(client_.io_context(), [done = std::move(done_), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  }

  UpstreamClient& client_;
  core::CredentialsCall call_;
  std::chrono::milliseconds timeout_;
  Clock::time_point deadline_{};
  Done done_;
  std::shared_ptr<UpstreamConnection> connection_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
};

}  // namespace

void exchange_credentials_call(UpstreamClient& client, core::CredentialsCall call, std::chrono::milliseconds timeout,
                               std::size_t max_body, std::function<void(CredentialsHttpResult)> done) {
  std::make_shared<CredentialsExchange>(client, std::move(call), timeout, max_body, std::move(done))->start();
}

}  // namespace membraned::server
