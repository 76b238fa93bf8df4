// What capi prints, as the original CLI prints it: a success answer as JSON indented by 2
// (JSON.stringify(response, null, 2), keys in the service's order) on stdout; a failure as
// "FAILED", the message, then the error object as JSON, on stderr. Nothing printed on stderr ever
// holds a capability token.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/http.hpp"

namespace membraned::cli {

// capi's exit statuses, so that a script can tell a refusal from a service it could not reach.
inline constexpr int kExitRefused = 1;   // an error answer: the service's, or for invoke the upstream's
inline constexpr int kExitUsage = 2;     // a flag, file, profile or capability unusable: nothing was sent
inline constexpr int kExitNoAnswer = 3;  // no answer came: connection refused, TLS, timeout

struct Failure {
  std::string message;
  nlohmann::ordered_json error;  // the error object the original SDK would have given
  int exit_status = kExitRefused;
};

// The outcome of a management call (create, query, export, revoke, deleteSelf), judged as the
// original SDK judges it: a status >= 400, a body that is not JSON, or a JSON body holding "error"
// or a statusCode >= 400 is a failure.
struct ManagementOutcome {
  bool ok = false;
  std::string stdout_text;  // ok: the answer, indented JSON and a newline ("" for an empty body)
  Failure failure;          // !ok
};
ManagementOutcome judge_management_answer(unsigned status, std::string_view body);

// The service refused the operation capi stated (X-Capability-Operation, contract §2) because the
// capability given performs another one: a 409 that names it in that header. The failure says
// plainly what the capability is, that nothing was done, and which command it belongs to; none
// for any other answer (a 409 of create for a membrane id in use has no such header).
std::optional<Failure> wrong_capability(unsigned status, const core::Headers& headers, std::string_view stated,
                                        std::string_view body);

// A request that got no answer (connect, TLS, timeout...): "Request failed: REASON".
Failure request_failure(std::string_view reason);

// FAILED\n<message>\n<error as JSON, indented by 2>\n, with every token redacted.
std::string format_failure(const Failure& failure);

// Every CPBLTY<version>-<base64url> in text replaced by CPBLTY<version>-<redacted>.
std::string redact_tokens(std::string_view text);

}  // namespace membraned::cli
