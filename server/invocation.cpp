#include "server/invocation.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "core/http.hpp"
#include "server/server_context.hpp"

namespace membraned::server {

namespace {

// Upstream reads: a typical answer header and a small body arrive in one read.
constexpr std::size_t kUpstreamBufferReserve = 8 * 1024;
constexpr std::size_t kMaxChunk = 64 * 1024;
constexpr std::uint32_t kUpstreamHeaderLimit = 64 * 1024;

// The relay runs on two strands: the upstream connection's (reads, and the connection's own
// state) and the requester's (writes). It hops between them for each piece of the answer; the
// upstream connection has a strand of its own because the pool hands it from one requester's
// session to another's.
class Invocation : public std::enable_shared_from_this<Invocation> {
 public:
  Invocation(ServerContext& context, std::shared_ptr<RequesterSide> requester, const core::UriExport& config,
             const std::string& tenant, core::UpstreamRequest upstream, std::string body, bool requester_head,
             Clock::time_point started, SendCheck check)
      : context_(context),
        requester_(std::move(requester)),
        check_(std::move(check)),
        upstream_(std::move(upstream)),
        requester_executor_(requester_->requester_executor()),
        timeout_(std::min<std::uint64_t>(config.timeout_ms.value_or(context.settings.upstream_timeout_ms),
                                         context.settings.upstream_timeout_ms)),
        upstream_head_(upstream_.method == "HEAD"),
        requester_head_(requester_head),
        started_(started),
        tenant_(tenant) {
    request_ = make_request(upstream_.method, upstream_.target, upstream_.headers, std::move(body));
    upstream_buffer_.reserve(kUpstreamBufferReserve);
    std::string tls_identity;
    if (upstream_.https) {
      auto tls = context_.upstream.tls_for(config.tls);
      tls_ = std::move(tls.context);
      tls_identity = std::move(tls.identity);
    }
    pool_key_ = UpstreamClient::pool_key(tenant, upstream_.https, upstream_.connect_host, upstream_.port, tls_identity);
  }

  ~Invocation() {
    context_.metrics.invocation_seconds(std::chrono::duration<double>(Clock::now() - started_).count());
  }

  // On the requester's strand.
  void start() {
    upstream_started_ = Clock::now();
    if (upstream_.https && !tls_) {
      return fail(502, "the upstream's TLS settings could not be loaded", UpstreamError::tls_config);
    }
    if (!pool_key_.empty()) connection_ = context_.upstream.take_idle(pool_key_);
    if (connection_) {
      reused_ = true;
      return net::dispatch(connection_->strand, [self = shared_from_this()] { self->send_request(); });
    }
    open_connection();
  }

 private:
  beast::tcp_stream& lowest() { return connection_->lowest(); }

  // A new connection (the first use, or a pooled one found closed).
  void open_connection() {
    reused_ = false;
    context_.upstream.connect(
        UpstreamEndpoint{upstream_.connect_host, upstream_.port, upstream_.https, tls_, tenant_}, ConnectLimits{timeout_},
        /*checked=*/true,
        [self = shared_from_this()](std::shared_ptr<UpstreamConnection> connection, std::optional<ConnectFailure> failure) {
          self->connection_ = std::move(connection);
          if (failure) return self->fail_to_connect(*failure);
          self->send_request();
        });
  }

  void fail_to_connect(const ConnectFailure& failure) {
    switch (failure.step) {
      case ConnectStep::resolve:
        return fail_from(failure.ec, "the upstream's host name could not be resolved", UpstreamError::dns);
      case ConnectStep::refused:
        return fail(502, failure.refusal, UpstreamError::refused);
      case ConnectStep::connect:
        return fail_from(failure.ec, "the upstream could not be reached", UpstreamError::connect);
      case ConnectStep::handshake:
        return fail_from(failure.ec, "the TLS handshake with the upstream failed", UpstreamError::tls);
    }
  }

  // On the upstream's strand from here to read_chunk. The capability is checked again at the
  // last moment: a revoke that answered since the request was authorised stops it here.
  void send_request() {
    check_(connection_->strand, [self = shared_from_this()](std::optional<api::Response> refusal) {
      if (refusal) return self->refuse_at_send(std::move(*refusal));
      self->write_request();
    });
  }

  // Nothing was written: the connection is as good as before (pooled again when it may be).
  void refuse_at_send(api::Response refusal) {
    drop_request_body();
    if (!pool_key_.empty() && !context_.stopping) {
      context_.upstream.keep_idle(pool_key_, std::move(connection_));
    } else {
      close_upstream();
    }
    net::dispatch(requester_executor_, [self = shared_from_this(), refusal = std::move(refusal)]() mutable {
      self->requester_->answer_failed(std::move(refusal));
    });
  }

  // The requester's body is held until an answer begins (a retry on a fresh connection sends it
  // again); freed before the requester hears of the answer, which gives its room back
  // (BodyBudget) then, not when the relay object goes.
  void drop_request_body() { std::string().swap(request_.body()); }

  void write_request() {
    lowest().expires_after(timeout_);
    connection_->with_stream([self = shared_from_this()](auto& stream) {
      http::async_write(stream, self->request_, beast::bind_front_handler(&Invocation::on_request_written, self));
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
    parser_->header_limit(kUpstreamHeaderLimit);
    if (upstream_head_) parser_->skip(true);
    lowest().expires_after(timeout_);
    connection_->with_stream([self = shared_from_this()](auto& stream) {
      http::async_read_header(stream, self->upstream_buffer_, *self->parser_,
                              beast::bind_front_handler(&Invocation::on_header, self));
    });
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec && !parser_->got_some() && retry_on_fresh_connection(ec)) return;
    if (ec) return fail_from(ec, "the upstream's answer could not be read", read_error(ec));
    const unsigned status = parser_->get().result_int();
    if (status >= 100 && status < 200) return read_header();  // interim answers are not relayed
    drop_request_body();  // no retry after an answer began
    context_.metrics.upstream_seconds(std::chrono::duration<double>(Clock::now() - upstream_started_).count());
    const bool no_body = prepare_answer(status);
    if (no_body || parser_->is_done()) {
      response_.body().data = nullptr;
      response_.body().size = 0;
      response_.body().more = false;
      return net::dispatch(requester_executor_, [self = shared_from_this()] { self->write_chunk(); });
    }
    // The header goes out with the first piece of the body, in one write: for the small answers
    // of most invocations, the whole answer in one system call.
    read_chunk();
  }

  // The answer goes out as it comes in: same status and headers, minus hop-by-hop ones and those
  // the upstream's Connection names; framing chosen for the requester, by the requester's method
  // (the export may send another). True when no body goes out.
  bool prepare_answer(unsigned status) {
    auto& up = parser_->get();
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
    // The status says no body, or the upstream answers the export's HEAD: no body from it.
    const bool bodiless_status = status == 204 || status == 304;
    const bool upstream_no_body = upstream_head_ || bodiless_status;
    if (bodiless_status) {
      // No length either.
    } else if (requester_head_) {
      // The header alone, with the length the upstream gave: the length of the body a GET would
      // get. A body the upstream sends (the export's method is not HEAD) is never read, and its
      // connection then closes (finish).
      if (auto it = up.find(http::field::content_length); it != up.end()) {
        response_.set(http::field::content_length, it->value());
      }
    } else if (upstream_head_) {
      // The answer to the export's HEAD, for a requester that expects a body: an empty one, said.
      response_.content_length(0);
    } else if (auto length = parser_->content_length()) {
      response_.content_length(*length);
    } else {
      response_.chunked(true);
    }
    upstream_reusable_ = up.keep_alive();
    if (upstream_no_body) {
      // A body-less answer that announces a length may be followed by bytes the upstream should
      // not have sent: such a connection is not trusted with another request.
      auto length = up.find(http::field::content_length);
      if (length != up.end() && length->value() != "0") upstream_reusable_ = false;
    }
    return upstream_no_body || requester_head_;
  }

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
    connection_->with_stream([self = shared_from_this()](auto& stream) {
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
    // A read may end on framing alone (a chunk's size line): nothing to relay yet, read on.
    // Handing the serializer no bytes writes nothing at all, not even the header, so the answer
    // would count as begun and a failure after it would cut a connection that got no byte,
    // instead of answering 502.
    const std::size_t got = chunk_size_ - parser_->get().body().size;
    if (got == 0 && !parser_->is_done()) return read_chunk();
    writing_bytes_ = got;
    // No bytes (the end): no buffer; an empty one would make the serializer write a last chunk.
    response_.body().data = got > 0 ? chunk_.get() : nullptr;
    response_.body().size = got;
    response_.body().more = !parser_->is_done();
    net::dispatch(requester_executor_, [self = shared_from_this()] { self->write_chunk(); });
  }

  // On the requester's strand. The first call decides keep-alive, has the answer logged, and
  // writes the header with the first piece of the body.
  void write_chunk() {
    if (!header_sent_) {
      header_sent_ = true;
      keep_alive_ = requester_->answer_begins(response_);
      response_.keep_alive(keep_alive_);
      serializer_.emplace(response_);
    }
    requester_->write_answer(*serializer_, [self = shared_from_this()](beast::error_code ec) {
      self->on_client_written(ec);
    });
  }

  // On the requester's strand.
  void on_client_written(beast::error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      upstream_reusable_ = false;
      net::dispatch(connection_->strand, [self = shared_from_this()] { self->close_upstream(); });
      return requester_->answer_broken(relayed_bytes_);
    }
    relayed_bytes_ += std::exchange(writing_bytes_, 0);
    if (serializer_->is_done()) return finish();
    net::dispatch(connection_->strand, [self = shared_from_this()] { self->read_chunk(); });
  }

  // On the requester's strand; the upstream connection has nothing pending.
  void finish() {
    if (upstream_reusable_ && parser_->is_done() && upstream_buffer_.size() == 0 && !pool_key_.empty() &&
        !context_.stopping) {
      context_.upstream.keep_idle(pool_key_, std::move(connection_));
    } else {
      net::dispatch(connection_->strand, [connection = connection_] { connection->close(); });
    }
    requester_->answer_done(keep_alive_, relayed_bytes_);
  }

  // On the upstream's strand.
  void close_upstream() {
    if (connection_ && connection_->open()) connection_->close();
  }

  static UpstreamError read_error(beast::error_code ec) {
    return ec.category() == http::make_error_code(http::error::bad_version).category() ? UpstreamError::malformed
                                                                                       : UpstreamError::reset;
  }

  void fail_from(beast::error_code ec, const std::string& what, UpstreamError kind) {
    if (ec == beast::error::timeout) {
      // The step, for the operator: a read that timed out is counted as a reset.
      const bool reading = kind == UpstreamError::reset || kind == UpstreamError::malformed;
      return fail(504, "the upstream did not answer in time", UpstreamError::timeout,
                  (reading ? std::string("answer") : std::string(to_string(kind))) + " timed out after " +
                      std::to_string(timeout_.count()) + " ms");
    }
    fail(502, what, kind, std::string(to_string(kind)) + ": " + ec.message());
  }

  // On the upstream's strand (or the requester's, before any upstream step). `cause`: what went
  // wrong, for the operator's log line after the upstream's host (never its path or query).
  void fail(int status, std::string message, UpstreamError kind, const std::string& cause = {}) {
    close_upstream();
    drop_request_body();
    auto failure = api::Api::error_response(status, std::move(message));
    failure.detail =
        "upstream " + upstream_.connect_host + ":" + std::to_string(upstream_.port) + " " +
        (cause.empty() ? std::string(to_string(kind)) + ": " + failure.body["message"].get<std::string>()
                       : cause);
    net::dispatch(requester_executor_,
                  [self = shared_from_this(), failure = std::move(failure), kind]() mutable {
                    if (self->header_sent_) {
                      self->context_.metrics.upstream_error(UpstreamError::truncated);
                      return self->requester_->answer_broken(self->relayed_bytes_);
                    }
                    self->context_.metrics.upstream_error(kind);
                    self->requester_->answer_failed(std::move(failure));
                  });
  }

  ServerContext& context_;
  std::shared_ptr<RequesterSide> requester_;
  SendCheck check_;
  core::UpstreamRequest upstream_;
  http::request<http::string_body> request_;
  net::any_io_executor requester_executor_;
  std::shared_ptr<ssl::context> tls_;
  std::string pool_key_;  // empty: not pooled
  std::shared_ptr<UpstreamConnection> connection_;
  bool reused_ = false;
  bool upstream_reusable_ = false;
  // What the parser cannot use yet: the answer's header, a chunk's size line with its
  // extensions, the trailers, each only whole. Its maximum bounds the last two, which Beast's
  // limits do not count (an answer that overflows it is malformed: 502).
  beast::flat_buffer upstream_buffer_{kUpstreamHeaderLimit};
  std::optional<http::response_parser<http::buffer_body>> parser_;
  http::response<http::buffer_body> response_;
  std::optional<RelayedAnswer> serializer_;
  std::unique_ptr<char[]> chunk_;  // the relay buffer, made by the first read of the body
  std::size_t chunk_size_ = 0;
  std::chrono::milliseconds timeout_;
  bool upstream_head_;   // the export's method is HEAD: the upstream's answer has no body
  bool requester_head_;  // the requester's method is HEAD: the relayed answer has no body
  bool header_sent_ = false;
  Clock::time_point started_;           // the request's, for the invocation's duration
  Clock::time_point upstream_started_;  // the first upstream step's
  std::string tenant_;                  // whose export: its share of the resolver
  bool keep_alive_ = false;
  std::size_t writing_bytes_ = 0;    // body bytes of the write in progress
  std::uint64_t relayed_bytes_ = 0;  // body bytes the requester was sent
};

}  // namespace

void start_invocation(ServerContext& context, std::shared_ptr<RequesterSide> requester, const core::UriExport& config,
                      const std::string& tenant, core::UpstreamRequest upstream, std::string body, bool requester_head,
                      Clock::time_point started, SendCheck check) {
  std::make_shared<Invocation>(context, std::move(requester), config, tenant, std::move(upstream), std::move(body),
                               requester_head, started, std::move(check))
      ->start();
}

}  // namespace membraned::server
