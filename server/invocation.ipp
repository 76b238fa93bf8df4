// The signing proxy: one invocation of a uri capability, from the prepared upstream request to
// the upstream's answer relayed, as it arrives, to the requester. Included by http_server.cpp
// only (Beast and Asio stay in one translation unit).
//
// Before the upstream's header is in, every failure becomes a JSON 502 (504 for a timeout) and
// the requester's connection stays usable. After it, the answer is streamed through a 64 KiB
// buffer (memory stays flat whatever its size); a failure then can only close the connection.

template <class Session>
class Invocation : public std::enable_shared_from_this<Invocation<Session>> {
 public:
  Invocation(std::shared_ptr<Session> session, ServerState& state, core::UpstreamRequest upstream,
             std::string body, const core::UriExport& config)
      : session_(std::move(session)),
        state_(state),
        upstream_(std::move(upstream)),
        client_exec_(session_->stream().get_executor()),
        timeout_(std::chrono::milliseconds(std::min<std::uint64_t>(
            config.timeout_ms.value_or(state.settings.upstream_timeout_ms), state.settings.upstream_timeout_ms))),
        head_(upstream_.method == "HEAD"),
        started_(session_->request_started()) {
    request_.version(11);
    request_.method_string(upstream_.method);
    request_.target(upstream_.target);
    for (const core::Header& h : upstream_.headers) request_.insert(h.name, h.value);
    request_.body() = std::move(body);
    upstream_buffer_.reserve(kSessionBufferReserve);
    if (upstream_.https) tls_ = client_context(config);
    // Connections are pooled by scheme, host and port when they use no per-export TLS material.
    if (!upstream_.https || tls_ == state_.default_client_tls) {
      pool_key_ = std::string(upstream_.https ? "https://" : "http://") + upstream_.connect_host + ":" +
                  std::to_string(upstream_.port);
    }
  }

  ~Invocation() {
    state_.metrics.invocation_seconds(std::chrono::duration<double>(Clock::now() - started_).count());
  }

  // On the requester's strand.
  void start() {
    upstream_started_ = Clock::now();
    if (upstream_.https && !tls_) {
      return fail(502, "the upstream's TLS settings could not be loaded", UpstreamError::tls_config);
    }
    if (!pool_key_.empty()) connection_ = state_.upstream_pool.take(pool_key_);
    if (connection_) {
      reused_ = true;
      return net::dispatch(connection_->strand, [self = this->shared_from_this()] { self->send_request(); });
    }
    open_connection();
  }

 private:
  std::shared_ptr<ssl::context> client_context(const core::UriExport& config) {
    const bool custom = config.tls && (!config.tls->ca.empty() || !config.tls->cert.empty() ||
                                       !config.tls->reject_unauthorized);
    if (!custom) return state_.default_client_tls;
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    beast::error_code ec;
    if (!config.tls->ca.empty()) {
      ctx->add_certificate_authority(net::buffer(config.tls->ca), ec);  // replaces the default store
    } else {
      ctx->set_default_verify_paths(ec);
    }
    if (!ec && !config.tls->cert.empty()) {
      ctx->use_certificate_chain(net::buffer(config.tls->cert), ec);
      if (!ec) ctx->use_private_key(net::buffer(config.tls->key), ssl::context::pem, ec);
    }
    if (ec) return nullptr;
    ctx->set_verify_mode(config.tls->reject_unauthorized ? ssl::verify_peer : ssl::verify_none);
    return ctx;
  }

  beast::tcp_stream& lowest() { return connection_->lowest(); }

  template <class F>
  void with_stream(F&& f) {
    if (connection_->tls) {
      f(*connection_->tls);
    } else {
      f(*connection_->plain);
    }
  }

  // A new connection (the first use, or a pooled one found closed): resolve on its strand.
  void open_connection() {
    reused_ = false;
    connection_ = std::make_shared<UpstreamConnection>(state_.ioc);
    resolver_.emplace(connection_->strand);
    resolver_->async_resolve(upstream_.connect_host, std::to_string(upstream_.port),
                             beast::bind_front_handler(&Invocation::on_resolve, this->shared_from_this()));
  }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) return fail(502, "the upstream's host name could not be resolved", UpstreamError::dns);
    // SPEC 10 again, on the addresses actually connected to: a name that now resolves to a
    // closed address (DNS rebinding) is not called.
    std::vector<tcp::endpoint> allowed;
    std::optional<core::Error> refusal;
    for (const auto& entry : results) {
      auto verdict = state_.upstream_policy.check(to_ip_address(entry.endpoint().address()), upstream_.port);
      if (verdict) {
        allowed.push_back(entry.endpoint());
      } else if (!refusal) {
        refusal = verdict.error();
      }
    }
    if (allowed.empty()) {
      return fail(502, refusal ? refusal->message : "the upstream has no address", UpstreamError::refused);
    }
    if (upstream_.https) {
      auto& tls = connection_->tls.emplace(connection_->strand, *tls_);
      const bool is_ip = [&] {
        beast::error_code parse_ec;
        net::ip::make_address(upstream_.connect_host, parse_ec);
        return !parse_ec;
      }();
      if (!is_ip) SSL_set_tlsext_host_name(tls.native_handle(), upstream_.connect_host.c_str());
      tls.set_verify_callback(ssl::host_name_verification(upstream_.connect_host));
    } else {
      connection_->plain.emplace(connection_->strand);
    }
    lowest().expires_after(timeout_);
    lowest().async_connect(allowed, beast::bind_front_handler(&Invocation::on_connect, this->shared_from_this()));
  }

  void on_connect(beast::error_code ec, const tcp::endpoint&) {
    if (ec) return fail_from(ec, "the upstream could not be reached", UpstreamError::connect);
    lowest().socket().set_option(tcp::no_delay(true), ec);
    if (connection_->tls) {
      lowest().expires_after(timeout_);
      return connection_->tls->async_handshake(
          ssl::stream_base::client, beast::bind_front_handler(&Invocation::on_handshake, this->shared_from_this()));
    }
    send_request();
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return fail_from(ec, "the TLS handshake with the upstream failed", UpstreamError::tls);
    send_request();
  }

  void send_request() {
    lowest().expires_after(timeout_);
    with_stream([self = this->shared_from_this()](auto& stream) {
      http::async_write(stream, self->request_,
                        beast::bind_front_handler(&Invocation::on_request_written, self));
    });
  }

  void on_request_written(beast::error_code ec, std::size_t) {
    if (ec && retry_on_fresh_connection(ec)) return;
    if (ec) return fail_from(ec, "the request could not be sent to the upstream", UpstreamError::send);
    read_header();
  }

  // A pooled connection the upstream closed while idle fails at once, before any answer: the
  // request goes again on a new connection (once).
  bool retry_on_fresh_connection(beast::error_code ec) {
    if (!reused_ || ec == beast::error::timeout) return false;
    close_upstream();
    upstream_buffer_.clear();
    open_connection();
    return true;
  }

  void read_header() {
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    parser_->header_limit(64 * 1024);
    if (head_) parser_->skip(true);
    lowest().expires_after(timeout_);
    with_stream([self = this->shared_from_this()](auto& stream) {
      http::async_read_header(stream, self->upstream_buffer_, *self->parser_,
                              beast::bind_front_handler(&Invocation::on_header, self));
    });
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec && parser_->got_some() == false && retry_on_fresh_connection(ec)) return;
    if (ec) return fail_from(ec, "the upstream's answer could not be read", read_error(ec));
    auto& up = parser_->get();
    const unsigned status = up.result_int();
    if (status >= 100 && status < 200) return read_header();  // interim answers are not relayed
    state_.metrics.upstream_seconds(std::chrono::duration<double>(Clock::now() - upstream_started_).count());

    // The answer goes out as it comes in: same status and headers, minus hop-by-hop ones and
    // those the upstream's Connection names; framing chosen for the requester.
    std::vector<std::string> listed;
    for (auto it = up.find(http::field::connection); it != up.end() && it->name() == http::field::connection; ++it) {
      core::append_connection_tokens(it->value(), listed);
    }
    response_.result(status);
    response_.reason(up.reason());
    response_.version(11);
    for (const auto& field : up) {
      std::string_view name = field.name_string();
      if (core::is_hop_by_hop_header(name) || beast::iequals(name, "content-length")) continue;
      if (std::find(listed.begin(), listed.end(), core::to_lower_ascii(name)) != listed.end()) continue;
      response_.insert(name, field.value());
    }
    const bool no_body = head_ || status == 204 || status == 304;
    if (head_) {
      if (auto it = up.find(http::field::content_length); it != up.end()) response_.set(http::field::content_length, it->value());
    } else if (!no_body) {
      if (auto length = parser_->content_length()) {
        response_.content_length(*length);
      } else {
        response_.chunked(true);
      }
    }
    keep_alive_ = session_->keep_alive_after_invocation();
    response_.keep_alive(keep_alive_);
    upstream_reusable_ = up.keep_alive();
    if (no_body) {
      // A body-less answer that announces a length may be followed by bytes the upstream should
      // not have sent: such a connection is not trusted with another request.
      auto length = up.find(http::field::content_length);
      if (length != up.end() && length->value() != "0") upstream_reusable_ = false;
    }
    serializer_.emplace(response_);
    if (no_body || parser_->is_done()) {
      response_.body().data = nullptr;
      response_.body().size = 0;
      response_.body().more = false;
      return net::dispatch(client_exec_, [self = this->shared_from_this()] { self->write_chunk(); });
    }
    // The header goes out with the first piece of the body, in one write: for the small answers
    // of most invocations, the whole answer in one system call.
    read_chunk();
  }

  void client_expires() {
    beast::get_lowest_layer(session_->stream()).expires_after(state_.settings.write_timeout);
  }

  // On the requester's strand.
  void on_client_written(beast::error_code ec, std::size_t) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      upstream_reusable_ = false;
      net::dispatch(connection_->strand, [self = this->shared_from_this()] { self->close_upstream(); });
      return session_->do_close();
    }
    if (serializer_->is_done()) return finish();
    net::dispatch(connection_->strand, [self = this->shared_from_this()] { self->read_chunk(); });
  }

  // On the upstream's strand.
  void read_chunk() {
    if (!chunk_) {
      // As large as the answer when it says its length, 64 KiB at most; left uninitialised (the
      // parser writes before anyone reads).
      chunk_size_ = static_cast<std::size_t>(std::min<std::uint64_t>(parser_->content_length().value_or(kMaxChunk), kMaxChunk));
      chunk_size_ = std::max<std::size_t>(chunk_size_, 1);
      chunk_ = std::make_unique_for_overwrite<char[]>(chunk_size_);
    }
    parser_->get().body().data = chunk_.get();
    parser_->get().body().size = chunk_size_;
    lowest().expires_after(timeout_);
    with_stream([self = this->shared_from_this()](auto& stream) {
      // read_some, not read: what arrives is relayed at once, not when 64 KiB have gathered.
      http::async_read_some(stream, self->upstream_buffer_, *self->parser_,
                            beast::bind_front_handler(&Invocation::on_chunk, self));
    });
  }

  void on_chunk(beast::error_code ec, std::size_t) {
    if (ec == http::error::need_buffer) ec = {};
    // Before the header went out the requester gets a JSON 502 or 504; after it, a truncated
    // answer (the connection closes).
    if (ec) return fail_from(ec, "the upstream's answer could not be read", read_error(ec));
    // A read may end on framing alone (a chunk's size line): no bytes, no buffer; an empty
    // buffer would make the serializer write the final chunk.
    const std::size_t got = chunk_size_ - parser_->get().body().size;
    response_.body().data = got > 0 ? chunk_.get() : nullptr;
    response_.body().size = got;
    response_.body().more = !parser_->is_done();
    net::dispatch(client_exec_, [self = this->shared_from_this()] { self->write_chunk(); });
  }

  // On the requester's strand. The first call also writes the header (and logs the answer).
  void write_chunk() {
    if (!header_sent_) {
      header_sent_ = true;
      session_->log_invocation(static_cast<int>(response_.result_int()));
    }
    client_expires();
    http::async_write(session_->stream(), *serializer_,
                      beast::bind_front_handler(&Invocation::on_client_written, this->shared_from_this()));
  }

  // On the requester's strand; the upstream connection has nothing pending.
  void finish() {
    if (upstream_reusable_ && parser_->is_done() && upstream_buffer_.size() == 0 && !pool_key_.empty() &&
        !state_.stopping) {
      state_.upstream_pool.give(pool_key_, std::move(connection_));
    } else {
      net::dispatch(connection_->strand, [connection = connection_] {
        beast::error_code ignored;
        connection->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        connection->lowest().socket().close(ignored);
      });
    }
    session_->invocation_done(keep_alive_);
  }

  // On the upstream's strand.
  void close_upstream() {
    if (!connection_ || !(connection_->plain || connection_->tls)) return;
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
  }

  static UpstreamError read_error(beast::error_code ec) {
    return ec.category() == http::make_error_code(http::error::bad_version).category() ? UpstreamError::malformed
                                                                                       : UpstreamError::reset;
  }

  void fail_from(beast::error_code ec, const std::string& what, UpstreamError kind) {
    if (ec == beast::error::timeout) return fail(504, "the upstream did not answer in time", UpstreamError::timeout);
    fail(502, what, kind);
  }

  // On the upstream's strand (or the requester's, before any upstream step).
  void fail(int status, std::string message, UpstreamError kind) {
    close_upstream();
    net::dispatch(client_exec_, [self = this->shared_from_this(), status, message = std::move(message), kind]() mutable {
      if (self->header_sent_) {
        self->state_.metrics.upstream_error(UpstreamError::truncated);
        return self->session_->do_close();
      }
      self->state_.metrics.upstream_error(kind);
      self->session_->invocation_failed(api::Api::error_response(status, std::move(message)));
    });
  }

  std::shared_ptr<Session> session_;
  ServerState& state_;
  core::UpstreamRequest upstream_;
  http::request<http::string_body> request_;
  net::any_io_executor client_exec_;
  std::shared_ptr<ssl::context> tls_;
  std::string pool_key_;  // empty: not pooled
  std::shared_ptr<UpstreamConnection> connection_;
  std::optional<tcp::resolver> resolver_;
  bool reused_ = false;
  bool upstream_reusable_ = false;
  beast::flat_buffer upstream_buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  http::response<http::buffer_body> response_;
  std::optional<http::response_serializer<http::buffer_body>> serializer_;
  static constexpr std::size_t kMaxChunk = 64 * 1024;
  std::unique_ptr<char[]> chunk_;  // the relay buffer, made by the first read of the body
  std::size_t chunk_size_ = 0;
  std::chrono::milliseconds timeout_;
  bool head_;
  bool header_sent_ = false;
  Clock::time_point started_;           // the request's, for the invocation's duration
  Clock::time_point upstream_started_;  // the first upstream step's
  bool keep_alive_ = false;
};
