#include "core/sts.hpp"

#include <expat.h>

#include <algorithm>
#include <array>
#include <climits>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/encoding.hpp"
#include "core/time.hpp"

namespace membraned::core {
namespace {

constexpr std::size_t kMaxDescribed = 512;
// Expat reports a namespaced name as URI + separator + local name. '\n' cannot be part of a
// name, and attribute-value normalisation turns it into a space in a namespace URI.
constexpr char kNsSeparator = '\n';

Error sts_error(std::string message) { return Error::invalid("sts", "STS answer: " + std::move(message)); }

std::string_view trim_xml_space(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// --- reading the answer with expat ------------------------------------------------------------
constexpr std::array<std::string_view, 4> kCredentialLeaves = {"AccessKeyId", "SecretAccessKey",
                                                               "SessionToken", "Expiration"};
constexpr std::array<std::string_view, 3> kErrorLeaves = {"Type", "Code", "Message"};

enum class Root { none, assume_role, error };

struct Reader {
  XML_Parser parser = nullptr;
  std::vector<std::string> path;  // local names of the open elements
  Root root = Root::none;
  std::array<std::optional<std::string>, 4> credentials;
  std::array<std::optional<std::string>, 3> error;
  std::optional<std::string>* open_leaf = nullptr;  // the wanted element being read
  std::string open_leaf_name;
  std::string text;
  std::optional<Error> failure;

  void fail(std::string message) {
    if (!failure) failure = sts_error(std::move(message));
    XML_StopParser(parser, XML_FALSE);
  }

  // The slot for the element just opened at `path`, when it is a wanted one.
  std::optional<std::string>* wanted_slot() {
    static constexpr std::array<std::string_view, 3> kCredentialsPath = {
        "AssumeRoleResponse", "AssumeRoleResult", "Credentials"};
    static constexpr std::array<std::string_view, 2> kErrorPath = {"ErrorResponse", "Error"};
    auto matches = [&](auto prefix) {
      if (path.size() != prefix.size() + 1) return false;
      return std::equal(prefix.begin(), prefix.end(), path.begin());
    };
    if (root == Root::assume_role && matches(kCredentialsPath)) {
      for (std::size_t i = 0; i < kCredentialLeaves.size(); ++i) {
        if (path.back() == kCredentialLeaves[i]) return &credentials[i];
      }
    }
    if (root == Root::error && matches(kErrorPath)) {
      for (std::size_t i = 0; i < kErrorLeaves.size(); ++i) {
        if (path.back() == kErrorLeaves[i]) return &error[i];
      }
    }
    return nullptr;
  }

  void start(const XML_Char* name) {
    if (failure) return;
    std::string_view full(name);
    std::size_t sep = full.rfind(kNsSeparator);
    std::string_view local = sep == std::string_view::npos ? full : full.substr(sep + 1);
    if (open_leaf != nullptr) {
      fail(open_leaf_name + " must hold text only");
      return;
    }
    path.emplace_back(local);
    if (path.size() == 1) {
      if (local == "AssumeRoleResponse") {
        root = Root::assume_role;
      } else if (local == "ErrorResponse") {
        root = Root::error;
      } else {
        fail("the root element is neither AssumeRoleResponse nor ErrorResponse");
      }
      return;
    }
    if (std::optional<std::string>* slot = wanted_slot()) {
      if (slot->has_value()) {
        fail(std::string(local) + " is given twice");
        return;
      }
      open_leaf = slot;
      open_leaf_name = std::string(local);
      text.clear();
    }
  }

  void end() {
    if (failure) return;
    if (open_leaf != nullptr) {
      *open_leaf = std::string(trim_xml_space(text));
      open_leaf = nullptr;
      text.clear();
    }
    if (!path.empty()) path.pop_back();
  }

  void characters(const XML_Char* s, int length) {
    if (failure || open_leaf == nullptr || length <= 0) return;
    text.append(s, static_cast<std::size_t>(length));
  }
};

void XMLCALL on_start(void* user, const XML_Char* name, const XML_Char** /*attributes*/) {
  static_cast<Reader*>(user)->start(name);
}
void XMLCALL on_end(void* user, const XML_Char* /*name*/) { static_cast<Reader*>(user)->end(); }
void XMLCALL on_characters(void* user, const XML_Char* s, int length) {
  static_cast<Reader*>(user)->characters(s, length);
}
// Any DOCTYPE is refused before its internal subset is read: no entity can be declared, so
// neither external entities nor nested expansions ("billion laughs") can happen.
void XMLCALL on_doctype(void* user, const XML_Char* /*name*/, const XML_Char* /*sysid*/,
                        const XML_Char* /*pubid*/, int /*has_internal_subset*/) {
  static_cast<Reader*>(user)->fail("a DOCTYPE is not allowed");
}
void XMLCALL on_entity_decl(void* user, const XML_Char*, int, const XML_Char*, int, const XML_Char*,
                            const XML_Char*, const XML_Char*, const XML_Char*) {
  static_cast<Reader*>(user)->fail("entity declarations are not allowed");
}
int XMLCALL on_external_entity(XML_Parser, const XML_Char*, const XML_Char*, const XML_Char*,
                               const XML_Char*) {
  return XML_STATUS_ERROR;  // never load anything
}

struct ParserDeleter {
  void operator()(XML_Parser p) const { XML_ParserFree(p); }
};

}  // namespace

Result<StsEndpoint> select_sts_endpoint(const EnvLookup& env, const std::optional<std::string>& region) {
  if (region && !is_aws_region(*region)) {
    return Error::invalid("region", "region must hold only lower-case letters, digits and '-'");
  }
  StsEndpoint out;
  out.signing_region = region ? *region : std::string(kStsGlobalSigningRegion);

  std::string url;
  std::string variable;
  for (std::string_view name : {"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"}) {
    if (auto value = env_value(env, name)) {
      url = std::move(*value);
      variable = std::string(name);
      break;
    }
  }
  if (url.empty()) {
    url = region ? "https://sts." + *region + ".amazonaws.com" : std::string(kStsGlobalEndpoint);
    variable = "region";
  }
  auto target = parse_upstream_uri(url);
  if (!target) {
    return Error::invalid(variable, variable + ": " + target.error().message);
  }
  if (target->query) {
    return Error::invalid(variable, variable + ": an STS endpoint URL must not hold a query");
  }
  out.target = std::move(*target);
  return out;
}

std::string assume_role_body(const AssumeRoleStep& step) {
  std::string body = "Action=AssumeRole&Version=2011-06-15&RoleArn=";
  aws_uri_encode(step.role_arn, false, body);
  body += "&RoleSessionName=";
  aws_uri_encode(step.role_session_name, false, body);
  if (step.external_id) {
    body += "&ExternalId=";
    aws_uri_encode(*step.external_id, false, body);
  }
  if (step.duration) {
    body += "&DurationSeconds=";
    body += std::to_string(step.duration->count());
  }
  return body;
}

StsRequest build_assume_role_request(const StsEndpoint& endpoint, const AssumeRoleStep& step) {
  StsRequest out;
  out.https = endpoint.target.https;
  out.connect_host = endpoint.target.connect_host;
  out.port = endpoint.target.port;
  out.method = "POST";
  out.target = endpoint.target.path;
  out.body = assume_role_body(step);
  out.headers = {{"Host", endpoint.target.authority},
                 {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                 {"Content-Length", std::to_string(out.body.size())}};
  return out;
}

sigv4::Signature sign_sts_request(StsRequest& request, const StsEndpoint& endpoint,
                                  const AwsCredentials& credentials,
                                  std::chrono::system_clock::time_point now,
                                  sigv4::SigningKeyCache* cache) {
  sigv4::Request r;
  r.method = request.method;
  std::size_t q = request.target.find('?');
  r.path = request.target.substr(0, q);
  if (q != std::string::npos) r.query = request.target.substr(q + 1);
  r.headers = std::move(request.headers);
  r.body = request.body;
  sigv4::Params params = sigv4::Params::for_service(endpoint.signing_region, "sts", now);
  sigv4::Credentials signer = to_sigv4_credentials(credentials);
  sigv4::Signature signature = sigv4::sign_headers(r, signer, params, cache);
  secure_wipe(signer.secret_access_key);
  secure_wipe(signer.session_token);
  request.headers = std::move(r.headers);
  return signature;
}

StsRequest make_assume_role_request(const StsEndpoint& endpoint, const AssumeRoleStep& step,
                                    const AwsCredentials& credentials,
                                    std::chrono::system_clock::time_point now,
                                    sigv4::SigningKeyCache* cache) {
  StsRequest request = build_assume_role_request(endpoint, step);
  sigv4::Signature stages = sign_sts_request(request, endpoint, credentials, now, cache);
  secure_wipe(stages.canonical_request);  // it holds the session token
  return request;
}

std::string StsServiceError::describe() const {
  std::string out = code;
  if (!message.empty()) out += ": " + message;
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) c = ' ';
  }
  if (out.size() > kMaxDescribed) {
    out.resize(kMaxDescribed);
    // Do not leave half of a UTF-8 sequence at the end.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "...";
  }
  return out;
}

Result<AssumeRoleAnswer> parse_assume_role_answer(std::string_view xml) {
  if (xml.size() > kMaxStsAnswer) return sts_error("the answer is too large");
  static_assert(kMaxStsAnswer < static_cast<std::size_t>(INT_MAX));

  Reader reader;
  std::unique_ptr<std::remove_pointer_t<XML_Parser>, ParserDeleter> parser(
      XML_ParserCreateNS(nullptr, kNsSeparator));
  if (!parser) return Error::internal("STS answer: cannot create an XML parser");
  reader.parser = parser.get();
  XML_SetUserData(parser.get(), &reader);
  XML_SetElementHandler(parser.get(), on_start, on_end);
  XML_SetCharacterDataHandler(parser.get(), on_characters);
  XML_SetStartDoctypeDeclHandler(parser.get(), on_doctype);
  XML_SetEntityDeclHandler(parser.get(), on_entity_decl);
  XML_SetExternalEntityRefHandler(parser.get(), on_external_entity);
  XML_SetParamEntityParsing(parser.get(), XML_PARAM_ENTITY_PARSING_NEVER);

  const XML_Status status =
      XML_Parse(parser.get(), xml.data(), static_cast<int>(xml.size()), /*isFinal=*/XML_TRUE);
  if (reader.failure) return *reader.failure;
  if (status != XML_STATUS_OK) {
    return sts_error(std::string("not well-formed XML (") +
                     XML_ErrorString(XML_GetErrorCode(parser.get())) + " at line " +
                     std::to_string(XML_GetCurrentLineNumber(parser.get())) + ")");
  }

  if (reader.root == Root::error) {
    auto& [type, code, message] = reader.error;
    if (!code || code->empty()) return sts_error("ErrorResponse/Error/Code is missing");
    return AssumeRoleAnswer(StsServiceError{type.value_or(""), std::move(*code), message.value_or("")});
  }

  auto& [key_id, secret, token, expiration_text] = reader.credentials;
  for (std::size_t i = 0; i < kCredentialLeaves.size(); ++i) {
    if (!reader.credentials[i]) {
      return sts_error("AssumeRoleResponse/AssumeRoleResult/Credentials/" +
                       std::string(kCredentialLeaves[i]) + " is missing");
    }
  }
  auto expiration = parse_iso8601(*expiration_text);
  if (!expiration) return sts_error(expiration.error().message);
  AwsCredentials out{std::move(*key_id), std::move(*secret), std::move(*token), *expiration};
  if (auto s = validate_credentials(out, {"AccessKeyId", "SecretAccessKey", "SessionToken"}); !s) {
    secure_wipe(out.secret_access_key);
    return sts_error(s.error().message);
  }
  return AssumeRoleAnswer(std::move(out));
}

}  // namespace membraned::core
