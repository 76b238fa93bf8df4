#include "cli/output.hpp"

namespace membraned::cli {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::size_t kQuotedBodyLimit = 512;  // of a non-JSON answer quoted in an error

bool is_b64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// What a capability of each operation is, for a person, and the command that uses it.
struct OperationWords {
  std::string_view operation;
  std::string_view what;
  std::string_view command;
};
constexpr OperationWords kOperationWords[] = {
    {"create", "a tenant's create capability (it creates membranes)", "capi membrane create"},
    {"query", "a tenant's query capability (it lists membranes and grants)", "capi membrane query"},
    {"deleteSelf", "a tenant's deleteSelf capability (it deletes the tenant and all its membranes)",
     "capi membrane delete-self"},
    {"export", "a membrane's export capability (it exports capabilities through the membrane)",
     "capi membrane export"},
    {"revoke", "a membrane's revoke capability (it revokes the membrane)", "capi membrane revoke"},
    {"revokeGrant", "a grant's revoke capability (it revokes that grant)", "capi grant revoke"},
    {"invoke", "an exported capability (it sends a request to its upstream)", "capi invoke"},
};

const OperationWords* words_for(std::string_view operation) {
  for (const auto& w : kOperationWords) {
    if (w.operation == operation) return &w;
  }
  return nullptr;
}

std::string capability_description(std::string_view operation) {
  if (const auto* w = words_for(operation)) return std::string(w->what);
  return "a capability that performs \"" + std::string(operation) + "\"";
}

}  // namespace

std::optional<Failure> wrong_capability(unsigned status, const core::Headers& headers, std::string_view stated,
                                        std::string_view body) {
  if (status != 409) return std::nullopt;
  const core::Header* performs = core::find_header(headers, core::kCapabilityOperationHeader);
  if (performs == nullptr || performs->value.empty() || performs->value == stated) return std::nullopt;
  Failure f;
  f.message = "The capability given is " + capability_description(performs->value) + ", not " +
              capability_description(stated) + ". Nothing was done.";
  if (const auto* w = words_for(performs->value)) {
    f.message += " (Use it with: " + std::string(w->command) + ")";
  }
  f.error = Json::object();
  const Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  f.error["error"] = parsed.is_object() && parsed.contains("error") ? parsed["error"] : Json("Conflict");
  f.error["statusCode"] = status;
  if (parsed.is_object() && parsed.contains("message")) f.error["message"] = parsed["message"];
  return f;
}

std::string redact_tokens(std::string_view text) {
  constexpr std::string_view kMark = "CPBLTY";
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, kMark.size(), kMark) == 0) {
      std::size_t j = i + kMark.size();
      std::size_t digits = j;
      while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
      if (j > digits && j < text.size() && text[j] == '-') {
        std::size_t body = j + 1;
        std::size_t k = body;
        while (k < text.size() && is_b64url(text[k])) ++k;
        if (k > body) {
          out.append(text.substr(i, body - i));
          out += "<redacted>";
          i = k;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

Failure request_failure(std::string_view reason) {
  Failure f;
  f.message = "Request failed: " + std::string(reason);
  f.exit_status = kExitNoAnswer;
  f.error = Json::object();
  f.error["error"] = "Request failed";
  f.error["message"] = f.message;
  return f;
}

ManagementOutcome judge_management_answer(unsigned status, std::string_view body) {
  ManagementOutcome out;
  Json parsed;
  if (!body.empty()) {
    parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      std::string quoted(body.substr(0, kQuotedBodyLimit));
      if (body.size() > kQuotedBodyLimit) quoted += "...";
      out.failure.message = "error parsing \"" + quoted + "\"";
      out.failure.error = Json::object();
      out.failure.error["error"] = "Parsing response failed";
      out.failure.error["statusCode"] = status;
      out.failure.error["message"] = out.failure.message;
      return out;
    }
  }
  auto text_of = [](const Json& j, const char* key) -> std::string {
    if (!j.is_object() || !j.contains(key)) return {};
    const auto& v = j[key];
    return v.is_string() ? v.get<std::string>() : v.dump();
  };
  if (status >= 400) {
    // As the SDK: {error, statusCode, message} from the answer (keys absent there are left out).
    out.failure.error = Json::object();
    if (parsed.is_object() && parsed.contains("error")) out.failure.error["error"] = parsed["error"];
    out.failure.error["statusCode"] = status;
    if (parsed.is_object() && parsed.contains("message")) out.failure.error["message"] = parsed["message"];
    out.failure.message = text_of(parsed, "message");
    if (out.failure.message.empty()) out.failure.message = "the service answered " + std::to_string(status);
    return out;
  }
  if (parsed.is_object() &&
      (parsed.contains("error") ||
       (parsed.contains("statusCode") && parsed["statusCode"].is_number() && parsed["statusCode"].get<double>() >= 400))) {
    out.failure.error = parsed;
    out.failure.message = text_of(parsed, "message");
    if (out.failure.message.empty()) out.failure.message = text_of(parsed, "error");
    return out;
  }
  out.ok = true;
  if (!body.empty()) out.stdout_text = parsed.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  return out;
}

std::string format_failure(const Failure& failure) {
  std::string text = "FAILED\n" + failure.message + "\n";
  if (!failure.error.is_null()) {
    text += failure.error.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  }
  return redact_tokens(text);
}

}  // namespace membraned::cli
