"""Local stand-ins for AWS Lambda's Invoke API and an API Gateway (execute-api) stage, and a
CAP1-protected endpoint, each rejecting a wrong signature with 403 as AWS does.

SigV4 is checked with botocore (Debian's python3-botocore), an implementation independent of
membraned's; CAP1 with cap1_reference.py. Run with the Python that has botocore:
    /usr/bin/python3 fake_aws.py --access-key AKID --secret S [--cap1-key-id ID --cap1-key K]
It prints "PORT <n>" once it listens on 127.0.0.1.
"""
import argparse
import calendar
import hashlib
import hmac
import http.server
import json
import re
import sys
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import cap1_reference

AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                  r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")
INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


def sigv4_problem(handler, body, service, region, lookup):
    """None when botocore computes the same signature over what arrived; else why not.
    lookup(access_key) gives (secret, session token or None) for a key the fake knows, else None;
    a known session token must be the one presented. region None accepts the scope's."""
    m = AUTH.match(handler.headers.get("Authorization", ""))
    if not m:
        return "missing or malformed Authorization"
    access_key, date, scope_region, svc, signed, signature = m.groups()
    known = lookup(access_key)
    if known is None:
        return "The security token included in the request is invalid."
    secret, session_token = known
    if (region is not None and scope_region != region) or svc != service:
        return "wrong credential scope"
    amz_date = handler.headers.get("X-Amz-Date", "")
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return "bad X-Amz-Date"
    if abs(time.time() - signed_at) > 15 * 60 or amz_date[:8] != date:
        return "X-Amz-Date out of range"
    if handler.headers.get("X-Amz-Content-Sha256") != hashlib.sha256(body).hexdigest():
        return "X-Amz-Content-Sha256 does not match the body"
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return "host and x-amz-date must be signed"
    headers = {}
    for name in names:
        values = handler.headers.get_all(name)
        if values is None:
            return "signed header %s missing" % name
        headers[name] = ",".join(values)
    request = AWSRequest(method=handler.command, url="http://%s%s" % (handler.headers["Host"], handler.path),
                         data=body, headers=headers)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret, handler.headers.get("X-Amz-Security-Token")),
                       service, scope_region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        return "The request signature we calculated does not match the signature you provided."
    if session_token is not None and handler.headers.get("X-Amz-Security-Token") != session_token:
        return "The security token included in the request is invalid."
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--session-token")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--cap1-key-id")
    parser.add_argument("--cap1-key")
    args = parser.parse_args()

    def lookup(access_key):
        return (args.secret, args.session_token) if access_key == args.access_key else None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, payload=None, headers=()):
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            invoke = INVOKE.match(path)
            if invoke:
                problem = sigv4_problem(self, body, "lambda", args.region, lookup)
                if problem:
                    return self.answer(403, {"message": problem}, [("x-amzn-ErrorType", "InvalidSignatureException")])
                if self.command != "POST":
                    return self.answer(405, {"message": "Invoke is a POST"})
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                if kind == "Event":
                    return self.answer(202)
                if kind == "DryRun":
                    return self.answer(204)
                try:
                    event = json.loads(body) if body else None
                except ValueError:
                    return self.answer(400, {"message": "Could not parse request body into json"})
                return self.answer(200, {"function": invoke.group(1), "event": event},
                                   [("X-Amz-Executed-Version", "$LATEST")])
            if path.startswith("/stage/"):
                problem = sigv4_problem(self, body, "execute-api", args.region, lookup)
                if problem:
                    return self.answer(403, {"message": problem})
                return self.answer(200, {"method": self.command, "path": path, "query": query,
                                         "body": body.decode("utf-8", "replace"),
                                         "contentType": self.headers.get("Content-Type")})
            if path.startswith("/cap1/"):
                ok = cap1_reference.verify(list(self.headers.items()), self.command, path, query,
                                           {args.cap1_key_id: args.cap1_key}, time.time())
                return self.answer(200 if ok else 403, {"verified": ok})
            return self.answer(404, {"message": "no such route"})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
