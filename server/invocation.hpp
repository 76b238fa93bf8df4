// The signing proxy's relay: one invocation of a uri capability, from the prepared (built and
// signed) upstream request to the upstream's answer relayed, as it arrives, to the requester.
//
// Before the upstream's header is in, every failure becomes a JSON 502 (504 for a timeout) and
// the requester's connection stays usable. After it, the answer is streamed through a 64 KiB
// buffer (memory stays flat whatever its size); a failure then can only close the connection.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/serializer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "api/api.hpp"
#include "core/export_config.hpp"
#include "core/upstream_request.hpp"

namespace membraned::server {

struct ServerContext;

using RelayedAnswer = boost::beast::http::response_serializer<boost::beast::http::buffer_body>;
using RelayedHeader = boost::beast::http::response_header<>;

// The requester's side of the relay: where the answer goes and who hears how it ended. The relay
// calls every method on the requester's executor.
class RequesterSide {
 public:
  virtual ~RequesterSide() = default;
  virtual boost::asio::any_io_executor requester_executor() = 0;
  // The upstream's answer, with `header` as the relay made it, is about to go out (logged now;
  // the requester's side may add fields of its own). Whether the requester's connection may
  // stay open after it.
  virtual bool answer_begins(RelayedHeader& header) = 0;
  // Writes what `answer` has ready: the header with the first part of the body, then each part.
  virtual void write_answer(RelayedAnswer& answer, std::function<void(boost::beast::error_code)> done) = 0;
  // The whole answer went out, with `body_bytes` bytes of body.
  virtual void answer_done(bool keep_alive, std::uint64_t body_bytes) = 0;
  // Nothing went out: `failure` is the JSON answer to send instead.
  virtual void answer_failed(api::Response failure) = 0;
  // The answer broke after its header and `body_bytes` bytes of body went out: the connection
  // must close.
  virtual void answer_broken(std::uint64_t body_bytes) = 0;
};

// Asked at the last moment before the request is written to the upstream (after connecting, and
// again before a retry): whether the capability may still act, and its use is admitted. Calls
// `done` exactly once, on `executor` (the upstream connection's strand), with nothing (send) or
// the answer the requester gets instead (401, 429).
using SendCheck = std::function<void(boost::asio::any_io_executor executor,
                                     std::function<void(std::optional<api::Response> refusal)> done)>;

// Sends `upstream` (its body is `body`) with the connection settings of `config` (timeout, TLS)
// once `check` allows it, and relays the answer to `requester`, which it keeps alive until the
// end. Refused at send time, the requester gets the refusal and nothing reaches the upstream. `tenant`:
// the tenant whose export it is (upstream connections are pooled per tenant). `requester_head`:
// the requester asked with HEAD, so the answer relayed has no body whatever the upstream's
// method. `started`: when the request began, for the invocation's duration.
void start_invocation(ServerContext& context, std::shared_ptr<RequesterSide> requester, const core::UriExport& config,
                      const std::string& tenant, core::UpstreamRequest upstream, std::string body, bool requester_head,
                      std::chrono::steady_clock::time_point started, SendCheck check);

}  // namespace membraned::server
