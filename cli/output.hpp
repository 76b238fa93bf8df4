// What capi prints, as the original CLI prints it: a success answer as JSON indented by 2
// (JSON.stringify(response, null, 2), keys in the service's order) on stdout; a failure as
// "FAILED", the message, then the error object as JSON, on stderr. Nothing printed on stderr ever
// holds a capability token.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace membraned::cli {

struct Failure {
  std::string message;
  nlohmann::ordered_json error;  // the error object the original SDK would have given
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

// A request that got no answer (connect, TLS, timeout...).
Failure request_failure(std::string_view reason);

// FAILED\n<message>\n<error as JSON, indented by 2>\n, with every token redacted.
std::string format_failure(const Failure& failure);

// Every CPBLTY<version>-<base64url> in text replaced by CPBLTY<version>-<redacted>.
std::string redact_tokens(std::string_view text);

}  // namespace membraned::cli
