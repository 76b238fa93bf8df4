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
#include <boost/beast/http/serializer.hpp>

#include <chrono>
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

// The requester's side of the relay: where the answer goes and who hears how it ended. The relay
// calls every method on the requester's executor.
class RequesterSide {
 public:
  virtual ~RequesterSide() = default;
  virtual boost::asio::any_io_executor requester_executor() = 0;
  // The upstream's answer, with `status`, is about to go out (logged now). Whether the
  // requester's connection may stay open after it.
  virtual bool answer_begins(int status) = 0;
  // Writes what `answer` has ready: the header with the first part of the body, then each part.
  virtual void write_answer(RelayedAnswer& answer, std::function<void(boost::beast::error_code)> done) = 0;
  // The whole answer went out.
  virtual void answer_done(bool keep_alive) = 0;
  // Nothing went out: `failure` is the JSON answer to send instead. Or the answer broke after
  // its header went out (`failure` empty): the connection must close.
  virtual void answer_failed(std::optional<api::Response> failure) = 0;
};

// Sends `upstream` (its body is `body`) with the connection settings of `config` (timeout, TLS)
// and relays the answer to `requester`, which it keeps alive until the end. `started`: when the
// request began, for the invocation's duration. `requester_head`: the requester sent a HEAD, whose
// answer has no body whatever method the export sends upstream.
void start_invocation(ServerContext& context, std::shared_ptr<RequesterSide> requester, const core::UriExport& config,
                      core::UpstreamRequest upstream, std::string body, std::chrono::steady_clock::time_point started,
                      bool requester_head);

}  // namespace membraned::server
