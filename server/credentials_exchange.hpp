// One HTTP exchange with a credentials source (IMDSv2, the container endpoint, STS) for the
// CredentialsProvider: connect through the UpstreamClient, send, read the whole answer, close,
// all before one deadline. Connections are not pooled: a source is called once per refresh,
// minutes apart. These endpoints are the operator's own configuration, so the upstream address
// policy (contract §10, which closes exactly the metadata addresses to exports) does not apply.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "core/credential_endpoints.hpp"
#include "server/credentials_provider.hpp"
#include "server/upstream_client.hpp"

namespace membraned::server {

// Sends `call` and delivers the answer (any status) or an unavailable error saying which step
// failed (never a header value: the calls carry tokens). `done` runs exactly once, off the
// connection's strand.
void exchange_credentials_call(UpstreamClient& client, core::CredentialsCall call, std::chrono::milliseconds timeout,
                               std::size_t max_body, std::function<void(CredentialsHttpResult)> done);

}  // namespace membraned::server
