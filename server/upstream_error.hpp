// Why an invocation could not be relayed: the relay's failure taxonomy, counted by the metrics
// (the names are the `kind` label's values).
#pragma once

#include <string_view>

namespace membraned::server {

enum class UpstreamError { tls_config, dns, connect, tls, send, timeout, reset, malformed, truncated, refused };
std::string_view to_string(UpstreamError kind);

}  // namespace membraned::server
