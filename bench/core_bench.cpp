// Speed of the hot path's pure parts: signing an upstream request and handling tokens.
// Results and the command that produced them: docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include "core/cap1.hpp"
#include "core/export_config.hpp"
#include "core/sigv4.hpp"
#include "core/token.hpp"
#include "core/upstream_request.hpp"

namespace {

using namespace membraned::core;

const std::string& kilobyte_body() {
  static const std::string body = [] {
    std::string b = R"({"payload":")";
    b.append(1024 - b.size() - 2, 'x');
    b += R"("})";
    return b;
  }();
  return body;
}

sigv4::Request lambda_invoke_request() {
  sigv4::Request r;
  r.method = "POST";
  r.path = "/2015-03-31/functions/my-function/invocations";
  r.headers = {{"Host", "lambda.us-east-1.amazonaws.com"},
               {"Content-Type", "application/json"},
               {"User-Agent", "curl/7.88.1"},
               {"Accept", "*/*"},
               {"X-Amz-Invocation-Type", "RequestResponse"},
               {"X-Amz-Log-Type", "None"},
               {"Content-Length", "1024"}};
  r.body = kilobyte_body();
  return r;
}

const sigv4::Credentials kCredentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};

void BM_SigV4_LambdaInvoke1KiB_CachedKey(benchmark::State& state) {
  const sigv4::Request templ = lambda_invoke_request();
  sigv4::Params params = sigv4::Params::for_service("us-east-1", "lambda", std::chrono::system_clock::now());
  params.headers.extra = {"x-amz-invocation-type", "x-amz-log-type"};
  sigv4::SigningKeyCache cache;
  // Signing replaces the X-Amz-* and Authorization headers it added the time before, so one
  // request can be signed again and again: each iteration is a whole signing.
  sigv4::Request r = templ;
  for (auto _ : state) {
    auto sig = sigv4::sign_headers(r, kCredentials, params, &cache);
    benchmark::DoNotOptimize(sig);
  }
}
BENCHMARK(BM_SigV4_LambdaInvoke1KiB_CachedKey);

void BM_SigV4_LambdaInvoke1KiB_DerivedKey(benchmark::State& state) {
  const sigv4::Request templ = lambda_invoke_request();
  sigv4::Params params = sigv4::Params::for_service("us-east-1", "lambda", std::chrono::system_clock::now());
  sigv4::Request r = templ;
  for (auto _ : state) {
    auto sig = sigv4::sign_headers(r, kCredentials, params, nullptr);
    benchmark::DoNotOptimize(sig);
  }
}
BENCHMARK(BM_SigV4_LambdaInvoke1KiB_DerivedKey);

// The whole pure part of an invocation: build the upstream request from the capability's
// configuration and the requester's request, then sign it.
void BM_PrepareUpstreamRequest_LambdaInvoke1KiB(benchmark::State& state) {
  auto parsed = parse_export_config(R"({
    "uri": "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations",
    "method": "POST", "allowQuery": false,
    "headers": {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "None"},
    "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": "AKIDEXAMPLE",
      "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
      "region": "us-east-1", "service": "lambda"}}})");
  const UriExport& config = std::get<UriExport>(parsed.value());
  Headers incoming_headers = {{"Host", "membrane.example.com"},
                              {"Authorization", "Bearer CPBLTY1-xxxx"},
                              {"User-Agent", "curl/7.88.1"},
                              {"Accept", "*/*"},
                              {"Content-Type", "application/json"},
                              {"Content-Length", "1024"}};
  IncomingRequest incoming{"POST", "/", incoming_headers, kilobyte_body()};
  sigv4::SigningKeyCache cache;
  SigningContext context{std::chrono::system_clock::now(), &cache};
  for (auto _ : state) {
    auto request = prepare_upstream_request(config, incoming, context);
    benchmark::DoNotOptimize(request);
  }
}
BENCHMARK(BM_PrepareUpstreamRequest_LambdaInvoke1KiB);

void BM_Cap1_Sign(benchmark::State& state) {
  cap1::SignInput input;
  input.headers = {{"Host", "api.example.com"}, {"Content-Type", "application/json"}};
  input.method = "POST";
  input.path = "/v1/items";
  input.query = "a=1&b=2";
  input.key = "c2VjcmV0LWtleS1ieXRlcw";
  input.key_id = "key-1";
  input.now = std::chrono::system_clock::now();
  for (auto _ : state) {
    auto out = cap1::sign(input);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_Cap1_Sign);

void BM_Token_Generate(benchmark::State& state) {
  for (auto _ : state) {
    auto token = Token::generate();
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_Token_Generate);

void BM_Token_Parse(benchmark::State& state) {
  const std::string text = Token::generate()->text();
  for (auto _ : state) {
    auto token = Token::parse(text);
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_Token_Parse);

void BM_Token_ParseBearerAndDigest(benchmark::State& state) {
  const std::string header = "Bearer " + Token::generate()->text();
  for (auto _ : state) {
    auto token = parse_bearer(header);
    auto digest = token->digest();
    benchmark::DoNotOptimize(digest);
  }
}
BENCHMARK(BM_Token_ParseBearerAndDigest);

void BM_CapabilityUri_Parse(benchmark::State& state) {
  const std::string uri = CapabilityUri("membrane.example.com", *Token::generate()).serialize();
  for (auto _ : state) {
    auto parsed = CapabilityUri::parse(uri);
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_CapabilityUri_Parse);

}  // namespace

BENCHMARK_MAIN();
