// One HTTP exchange with a credentials source (IMDSv2, the container endpoint, STS) for the
// CredentialsProvider: resolve, connect, TLS when https, send, read the whole answer, all under
// one deadline. Included by http_server.cpp only (Beast and Asio stay in one translation unit).
//
// These endpoints are the operator's own configuration, so the upstream address policy (SPEC 10,
// which closes exactly the metadata addresses to exports) does not apply to them. Connections
// are not pooled: a source is called once per refresh, minutes apart.

class CredentialsExchange : public std::enable_shared_from_this<CredentialsExchange> {
 public:
  using Done = std::function<void(CredentialsHttpResult)>;

  CredentialsExchange(net::io_context& ioc, std::shared_ptr<ssl::context> tls, core::CredentialsCall call,
                      std::chrono::milliseconds timeout, std::size_t max_body, Done done)
      : strand_(net::make_strand(ioc)),
        resolver_(strand_),
        deadline_(strand_),
        tls_context_(std::move(tls)),
        call_(std::move(call)),
        timeout_(timeout),
        done_(std::move(done)) {
    request_.version(11);
    request_.method_string(call_.method);
    request_.target(call_.target);
    for (const core::Header& h : call_.headers) request_.insert(h.name, h.value);
    request_.body() = std::move(call_.body);
    parser_.body_limit(max_body);
    parser_.header_limit(16 * 1024);
  }

  void start() {
    net::dispatch(strand_, [self = shared_from_this()] {
      self->deadline_at_ = Clock::now() + self->timeout_;
      // The timer bounds the name resolution; each socket step carries the same deadline itself
      // (a resolution that completes just as the timer fires must not leave the rest unbounded).
      self->deadline_.expires_at(self->deadline_at_);
      self->deadline_.async_wait([self](beast::error_code ec) {
        if (ec || self->finished_) return;
        self->timed_out_ = true;
        self->resolver_.cancel();
        if (self->plain_) self->plain_->close();
        if (self->tls_) beast::get_lowest_layer(*self->tls_).close();
      });
      self->resolver_.async_resolve(self->call_.connect_host, std::to_string(self->call_.port),
                                    beast::bind_front_handler(&CredentialsExchange::on_resolve, self));
    });
  }

 private:
  beast::tcp_stream& lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    if (timed_out_) return fail(ec, "resolving its name");
    if (ec) return fail(ec, "its name could not be resolved");
    if (call_.https) {
      if (!tls_context_) return finish(core::Error::unavailable("no TLS client context"));
      tls_.emplace(strand_, *tls_context_);
      beast::error_code parse_ec;
      net::ip::make_address(call_.connect_host, parse_ec);
      if (parse_ec) SSL_set_tlsext_host_name(tls_->native_handle(), call_.connect_host.c_str());
      tls_->set_verify_callback(ssl::host_name_verification(call_.connect_host));
    } else {
      plain_.emplace(strand_);
    }
    lowest().expires_at(deadline_at_);
    lowest().async_connect(results, beast::bind_front_handler(&CredentialsExchange::on_connect, shared_from_this()));
  }

  void on_connect(beast::error_code ec, const tcp::endpoint&) {
    if (ec) return fail(ec, "connect");
    if (tls_) {
      lowest().expires_at(deadline_at_);
      return tls_->async_handshake(ssl::stream_base::client,
                                   beast::bind_front_handler(&CredentialsExchange::on_handshake, shared_from_this()));
    }
    write();
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return fail(ec, "TLS handshake");
    write();
  }

  void write() {
    lowest().expires_at(deadline_at_);
    auto self = shared_from_this();
    auto written = beast::bind_front_handler(&CredentialsExchange::on_written, self);
    if (tls_) return http::async_write(*tls_, request_, std::move(written));
    http::async_write(*plain_, request_, std::move(written));
  }

  void on_written(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "sending the request");
    lowest().expires_at(deadline_at_);
    auto self = shared_from_this();
    auto read = beast::bind_front_handler(&CredentialsExchange::on_read, self);
    if (tls_) return http::async_read(*tls_, buffer_, parser_, std::move(read));
    http::async_read(*plain_, buffer_, parser_, std::move(read));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == http::error::body_limit) return finish(core::Error::unavailable("its answer is too large"));
    if (ec) return fail(ec, "reading the answer");
    CredentialsHttpAnswer answer;
    answer.status = parser_.get().result_int();
    answer.body = std::move(parser_.get().body());
    if (tls_) {
      // Ends the TLS session without waiting for the peer's close_notify.
      beast::get_lowest_layer(*tls_).close();
    } else {
      beast::error_code ignored;
      plain_->socket().shutdown(tcp::socket::shutdown_both, ignored);
      plain_->close();
    }
    finish(std::move(answer));
  }

  void fail(beast::error_code ec, std::string_view step) {
    if (timed_out_ || ec == beast::error::timeout) return finish(core::Error::unavailable("no answer within " + std::to_string(timeout_.count()) + " ms"));
    finish(core::Error::unavailable(std::string(step) + ": " + ec.message()));
  }

  void finish(CredentialsHttpResult result) {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    // The provider's continuation runs off this strand, on the pool: it may start the next call.
    net::post(strand_.get_inner_executor(), [done = std::move(done_), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  }

  net::strand<net::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  net::steady_timer deadline_;
  std::shared_ptr<ssl::context> tls_context_;
  core::CredentialsCall call_;
  std::chrono::milliseconds timeout_;
  Clock::time_point deadline_at_{};
  Done done_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  bool timed_out_ = false;
  bool finished_ = false;
};
