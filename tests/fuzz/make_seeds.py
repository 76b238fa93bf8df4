#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (tests/fuzz/corpus/NAME/), from the examples of
the unit tests, the contract and docs/api.md, and the CAP1 known-answer vectors.

    tests/fuzz/make_seeds.py        (rewrites corpus/; the result is committed)

Seeds are small, meaningful inputs the fuzzer starts from: each one reaches a different part of
its parser. Inputs that a long hunt (scripts/fuzz.sh) found worth keeping may be added beside
them by hand; this script leaves files it did not write alone, but rewrites its own.
"""
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKEN = "CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def seeds_token():
    write("token", "token", TOKEN)
    write("token", "uri-usual", "cpblty://membraned.example:8443/#" + TOKEN)
    write("token", "uri-usual-ipv6", "cpblty://[::1]:8080/#" + TOKEN)
    write("token", "uri-custom", "cpblty:bWVtYnJhbmVkLmV4YW1wbGU:" + TOKEN)
    write("token", "uri-custom-scheme", "cpblty:bWVtYnJhbmVkLmV4YW1wbGU@https:" + TOKEN)
    write("token", "bearer", "Bearer " + TOKEN)
    write("token", "bearer-spaces", "bEaReR   " + TOKEN)
    write("token", "version-2", "CPBLTY2-" + TOKEN[8:])
    write("token", "short", "CPBLTY1-AAAA")


def seeds_upstream_uri():
    for i, uri in enumerate([
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations",
        "http://127.0.0.1:8080/fn?x=1&y=%20z#frag",
        "HTTP://[2001:DB8::1]:80/a/../b%20c?x=1&y",
        "https://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://0x7f.1/",
        "http://2130706433:65535",
        "http://0177.0.0.01/?",
        "https://localhost./",
        "http://api.localhost:1/",
        "https://host:https/",
        "http://user:pw@example.com/",
        "https://a.example:0/",
    ]):
        write("upstream_uri", f"uri-{i:02d}", uri)


def seeds_encoding():
    # The first byte is printable_excerpt's length.
    for i, text in enumerate([
        "aGVsbG8gd29ybGQ=", "aGVsbG8gd29ybGQ", "_-8", "00ff10AB", "%E2%82%AC%20+a",
        "a=1&b=x+y&c&=d&&e=%zz", "/a/./b/../../c//d/", "keep-alive, X-Foo ,close",
        '  "a  b"  c\t d "', "\u20ac\u00e9\U0001F600", "%ED%A0%80", "\xff\xfe",
    ]):
        write("encoding", f"text-{i:02d}", bytes([40]) + text.encode("utf-8", "surrogateescape"))


def seeds_export_config():
    bodies = [
        {"uri": "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations",
         "method": "POST", "allowQuery": False,
         "headers": {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "None"},
         "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE", "region": "us-east-1",
                                       "service": "lambda", "secretAccessKey": SECRET}}},
        {"uri": "HTTP://[2001:DB8::1]:80/a/../b%20c?x=1&y#frag", "method": "delete", "allowQuery": True,
         "timeoutMs": 99999999},
        {"uri": "https://upstream.example:8443/?", "headers": {"X-Int": 42, "X-Bool": False, "Accept": "*/*"},
         "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": "AKID", "secretAccessKey": "s/e+c=r et",
                                       "region": "eu-west-1", "service": "s3",
                                       "sessionToken": "FwoGZXIvYXdzEJr//////////wEaDM"}}, "timeoutMs": 1500},
        {"uri": "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/f/invocations",
         "hmac": {"aws4-hmac-sha256": {"credentials": "prod-lambda", "region": "eu-west-1", "service": "lambda"}}},
        {"uri": "http://192.0.2.1:8080/cap1", "method": "PATCH", "headers": {"Content-Type": "application/json"},
         "hmac": {"cap1-hmac-sha512": {"key": "c2VjcmV0LWtleQ", "keyId": "team:key-1"}},
         "tls": {"rejectUnauthorized": False}},
        {"uri": "https://internal.example/", "tls": {"ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                                                     "cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                                                     "key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                                                     "rejectUnauthorized": True}},
        {"capability": "cpblty://membraned.example/#" + TOKEN},
        {"capability": "cpblty:bWVtYnJhbmVkLmV4YW1wbGU@https:" + TOKEN},
    ]
    for i, body in enumerate(bodies):
        write("export_config", f"body-{i:02d}.json", json.dumps(body))
    write("export_config", "duplicate-key.json", '{"uri":"https://a.example/","headers":{"X-A":"1","X-A":"2"}}')
    write("export_config", "timeout-exponent.json", '{"uri":"https://upstream.example/","timeoutMs":1e3}')
    write("export_config", "not-json.json", '{"uri":')
    write("export_config", "grant-uri.json", json.dumps(
        {"uri": "https://upstream.example/x", "label": "caf\u00e9 feed", "expiresAt": "2099-12-31T23:59:59.5+02:00",
         "maxUses": 100, "rateLimit": {"requests": 10, "perSeconds": 60},
         "allowFrom": ["10.1.2.3/8", "2001:db8::1", "::ffff:192.0.2.0/120"]}))
    write("export_config", "grant-re-export.json", json.dumps(
        {"capability": "cpblty://membraned.example/#" + TOKEN, "expiresAt": "2030-01-01T00:00:00Z", "maxUses": 1}))


def seeds_cap1_verify():
    vectors = json.load(open(os.path.join(ROOT, "tests", "vectors", "cap1-vectors.json")))

    def request(method, path, query, headers):
        target = path + ("?" + query if query else "")
        lines = [f"{method} {target}"] + [f"{k}: {v}" for k, v in headers.items()]
        return "\n".join(lines) + "\n"

    for i, case in enumerate(vectors["verifyTestJs"]["cases"]):
        given = case["input"]
        write("cap1_verify", f"verify-{i:02d}", request(given.get("httpRequestMethod", "GET"), given.get("path", "/"),
                                                        given.get("queryString", ""), given.get("headers", {})))
    for i, vector in enumerate(vectors["generatedSignVectors"]):
        given = vector["input"]
        headers = dict(given["headers"])
        headers["Authorization"] = vector["expected"]["authorization"]
        write("cap1_verify", f"signed-{i:02d}", request(given.get("method", "GET"), given.get("path", "/"),
                                                        given.get("query", ""), headers))


def seeds_credentials_json():
    document = {"Code": "Success", "LastUpdated": "2026-11-24T06:00:00Z", "Type": "AWS-HMAC",
                "AccessKeyId": "ASIAIOSFODNN7EXAMPLE", "SecretAccessKey": SECRET,
                "Token": "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+==", "Expiration": "2026-11-24T12:00:00Z"}
    write("credentials_json", "imds.json", json.dumps(document))
    container = {k: document[k] for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")}
    container["RoleArn"] = "arn:aws:iam::123456789012:role/task"
    write("credentials_json", "container.json", json.dumps(container))
    write("credentials_json", "imds-failure.json", json.dumps({"Code": "AssumeRoleUnauthorizedAccess",
                                                               "Message": "no"}))
    write("credentials_json", "imds-token", "AQAEAKh0ZXN0LXRva2VuLWZvci1pbWRzdjI=")
    write("credentials_json", "role-listing", "lambda-invoker\nsecond-role\n")
    write("credentials_json", "role-dots", "..\n")


def seeds_credential_environment():
    write("credential_environment", "keys", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
          f"AWS_SECRET_ACCESS_KEY={SECRET}\nAWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEXAMPLE\nAWS_REGION=eu-west-1\n")
    write("credential_environment", "ecs-relative", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc?x=1\n")
    write("credential_environment", "ecs-full", "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:51679/creds\n"
          "AWS_CONTAINER_AUTHORIZATION_TOKEN=Basic abc=\n")
    write("credential_environment", "ecs-full-eks", "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://[fd00:ec2::23]/v1/credentials\n")
    write("credential_environment", "imds-endpoint", "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://[fd00:ec2::254]/prefix\n")
    write("credential_environment", "sts-endpoint", "AWS_ENDPOINT_URL_STS=https://sts.eu-west-1.amazonaws.com\n"
          "AWS_ENDPOINT_URL=http://localhost:4566\nAWS_REGION=eu-west-1\n")


def seeds_sts_answer():
    write("sts_answer", "assume-role.xml", """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==</SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
""")
    write("sts_answer", "error.xml", """<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:sts::123456789012:assumed-role/ec2/i-0abc is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111111111111:role/lambda-invoker</Message>
  </Error>
  <RequestId>4f1c5f1e-9f55-4a5c-9d5e-000000000000</RequestId>
</ErrorResponse>
""")
    write("sts_answer", "prefixed.xml", '<s:AssumeRoleResponse xmlns:s="urn:x"><s:AssumeRoleResult><s:Credentials>'
          '<s:AccessKeyId>ASIA1</s:AccessKeyId><s:SecretAccessKey>c2VjcmV0&amp;&#x41;<![CDATA[x]]></s:SecretAccessKey>'
          '<s:SessionToken>dG9rZW4=</s:SessionToken><s:Expiration>2030-01-01T00:00:00.000Z</s:Expiration>'
          '</s:Credentials></s:AssumeRoleResult></s:AssumeRoleResponse>')
    write("sts_answer", "doctype.xml", '<!DOCTYPE r [<!ENTITY x "y">]><AssumeRoleResponse>&x;</AssumeRoleResponse>')


def seeds_aws_config():
    write("aws_config", "instance-role.ini", """
[profile lambda]
role_arn = arn:aws:iam::123456789012:role/lambda-invoker
credential_source = Ec2InstanceMetadata
region = eu-west-1
membraned_tenants = 0123456789abcdef0123456789abcdef
""")
    write("aws_config", "environment.ini", "[profile env]\ncredential_source = Environment\nmembraned_tenants = *\n")
    write("aws_config", "static-keys.ini", "[profile keys]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
          f"aws_secret_access_key = {SECRET}\naws_session_token = TOKEN+/=\nmembraned_tenants = t1\n")
    write("aws_config", "chain.ini", f"""
[profile top]
role_arn = arn:aws:iam::111111111111:role/top
source_profile = middle
external_id = ext:id/1
role_session_name = top-session
duration_seconds = 1800
region = us-west-2
membraned_tenants = t1 t2

[profile middle]
role_arn = arn:aws:iam::222222222222:role/middle
source_profile = base
region = eu-central-1

[profile base]
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = {SECRET}

[profile unrelated]
sso_start_url = https://example.awsapps.com/start
""")
    write("aws_config", "self-source.ini", f"[profile self]\nrole_arn = arn:aws:iam::111111111111:role/self\n"
          f"source_profile = self\naws_access_key_id = AKID\naws_secret_access_key = {SECRET}\nmembraned_tenants = *\n")
    write("aws_config", "default-and-ecs.ini", "# a comment\n; another\n[default]\ncredential_source = EcsContainer\n"
          "membraned_tenants = t1\n[profile   spaced  ]\r\n\tROLE_ARN\t=   arn:aws:iam::111111111111:role/spaced   \r\n"
          "  Credential_Source=Ec2InstanceMetadata\r\nmembraned_tenants=t2\r\n")
    write("aws_config", "cycle.ini", "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\nmembraned_tenants = *\n"
          "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n")


# The fuzz target replaces each placeholder by a token of 94 characters before the service reads
# the request: lengths are counted with the tokens.
PLACEHOLDERS = ["@CREATE@", "@QUERY@", "@EXPORT@", "@INVOKE@", "@CAP1@", "@HEAD@"]


def length_with_tokens(text):
    for placeholder in PLACEHOLDERS:
        text = text.replace(placeholder, "x" * 94)
    return len(text.encode())


HTTP_POST = "POST / HTTP/1.1\r\nHost: membraned\r\nAuthorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n{body}"


def post(token, body, extra=""):
    return HTTP_POST.format(token=token, length=length_with_tokens(body), body=body).replace("\r\n\r\n", extra + "\r\n\r\n", 1)


def seeds_http_session():
    seeds = {
        "healthz": "GET /healthz HTTP/1.1\r\nHost: membraned\r\n\r\n",
        "metrics-head": "HEAD /metrics HTTP/1.1\r\nHost: membraned\r\n\r\n",
        "no-token": "GET / HTTP/1.1\r\nHost: membraned\r\n\r\n",
        "bad-token": "GET / HTTP/1.1\r\nHost: membraned\r\nAuthorization: Bearer CPBLTY1-AAAA\r\n\r\n",
        "create": post("@CREATE@", '{"id":"my-aws-lambda-membrane"}'),
        "create-continue": post("@CREATE@", '{"id":"m"}', "\r\nExpect: 100-continue"),
        "create-chunked": "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @CREATE@\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "5\r\n{\"id\"\r\n5;ext=1\r\n:\"c\"}\r\n0\r\nTrailer: x\r\n\r\n",
        "query": "GET /?limit=10&lastId=fuzz HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @QUERY@\r\n\r\n",
        "query-bad-limit": "GET /?limit=-1&limit=2&x=%zz HTTP/1.1\r\nHost: m\r\nAuthorization: bearer   @QUERY@\r\n\r\n",
        "export-uri": post("@EXPORT@", json.dumps({"uri": "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations",
                                                "method": "POST", "hmac": {"aws4-hmac-sha256": {
                                                    "awsAccessKeyId": "AKID", "secretAccessKey": "s",
                                                    "region": "us-east-1", "service": "lambda"}}})),
        "export-loopback": post("@EXPORT@", '{"uri":"http://0x7f.1:8080/"}'),
        "re-export": post("@EXPORT@", '{"capability":"cpblty://127.0.0.1:8080/#@INVOKE@"}'),
        "invoke": post("@INVOKE@", '{"hello":"world"}'),
        "invoke-query-head": "HEAD /?a=1&b=%20 HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @INVOKE@\r\nX-Amz-Date: x\r\n"
                             "Connection: X-Drop\r\nX-Drop: 1\r\n\r\n",
        "invoke-cap1": post("@CAP1@", "{}", "\r\nX-Cap-Date: 20170702T204657Z\r\nContent-Type: application/json"),
        "invoke-wrong-method": "GET / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @CAP1@\r\n\r\n",
        "invoke-head-export": "GET /x?y HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @HEAD@\r\n\r\n"
                              "HEAD / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @HEAD@\r\n\r\n",
        "pipelined": "GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n" + post("@CREATE@", '{"id":"p"}') +
                     "GET /healthz HTTP/1.0\r\n\r\n",
        "invoke-then-healthz": post("@INVOKE@", "{}") + "GET /healthz HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        "too-large": "POST / HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer @CREATE@\r\nContent-Length: 70000\r\n\r\n{",
        "malformed": "GET / HTTP/1.1\r\nHost m\r\n\r\n",
        "http10-close": "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
    }
    for name, text in seeds.items():
        write("http_session", name, text)


def seeds_upstream_answer():
    # The first byte: bit 0 HEAD, bit 1 a pipelined request behind.
    answers = {
        "plain": "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"hello\":\"world\"}",
        "chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Amzn-RequestId: 1\r\n\r\n"
                   "4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n",
        "until-eof": "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe body ends with the connection",
        "continue-then-201": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        "no-content": "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "not-modified": "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        "connection-listed": "HTTP/1.1 404 Not Found\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
                             "Keep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
        "http10": "HTTP/1.0 500 Internal Server Error\r\n\r\noops",
        "cut-body": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        "cut-header": "HTTP/1.1 200 OK\r\nContent-Le",
        "garbage": "SSH-2.0-OpenSSH_9.2\r\n",
        "two-answers": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
        "empty": "",
    }
    for name, text in answers.items():
        write("upstream_answer", name, "\x02" + text)
    write("upstream_answer", "plain-head", "\x03" + answers["plain"])
    write("upstream_answer", "chunked-head", "\x01" + answers["chunked"])
    write("upstream_answer", "plain-alone", "\x00" + answers["plain"])


if __name__ == "__main__":
    for name, function in list(globals().items()):
        if name.startswith("seeds_"):
            function()
