"""Local stand-ins for where AWS credentials come from and the service that takes them
(contract §9):
  - the EC2 instance metadata service, IMDSv2 only (PUT /latest/api/token, then the role name and
    the role's temporary credentials, each GET refused without a valid session token), on a port
    of its own that can be opened late (to play an IMDS that is down at start);
  - the ECS container credentials endpoint (GET /ecs/credentials, with an Authorization token);
  - STS AssumeRole (POST / form body), which verifies the request's SigV4 signature with botocore
    against the credentials it was signed with (instance, container or an earlier assumed role),
    and answers the AssumeRole XML or an STS error document;
  - Lambda Invoke, which accepts only credentials this fake issued (still unexpired), session
    token included, again checked by botocore.
Everything issued is remembered so the test can ask, on GET /_control/stats, which key signed
what. Run with the Python that has botocore:
    /usr/bin/python3 fake_identity.py [--imds-port N | --imds-late]
With --tls CERT KEY the main port speaks HTTPS. It prints "PORT <main> <imds>" once it listens
on 127.0.0.1 (imds 0 when opened later by
POST /_control/open-imds {"port": N}).

Roles: any arn:aws:iam::123456789012:role/NAME may be assumed, except that NAME "denied" is
refused (AccessDenied), NAME starting with "external-" requires ExternalId "ext-123", and NAME
starting with "short-" gets credentials that expire 303 s after issue (inside a client's refresh
window two to three seconds later: Expiration is given in whole seconds). STS waits --sts-delay seconds before answering, so that concurrent
callers would overlap if they called it more than once.
"""
import argparse
import datetime
import http.server
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse

from fake_aws import INVOKE, sigv4_problem

ACCOUNT = "123456789012"
INSTANCE_ROLE = "membraned-instance"
ECS_TOKEN = "Bearer ecs-authorization-token-for-tests"


class State:
    def __init__(self, sts_delay):
        self.lock = threading.Lock()
        self.sts_delay = sts_delay
        self.issued = {}  # access key -> {"secret", "token", "expires", "kind", "role"}
        self.imds_tokens = set()
        self.stats = {"imds_calls": 0, "ecs_calls": 0, "sts_calls": [], "sts_in_flight": {}, "sts_max_in_flight": {},
                      "lambda_calls": [], "rejected": []}

    def issue(self, kind, role, ttl):
        key = "ASIA" + secrets.token_hex(8).upper()
        creds = {"secret": secrets.token_urlsafe(30), "token": "IQoJ" + secrets.token_urlsafe(48),
                 "expires": time.time() + ttl, "kind": kind, "role": role}
        with self.lock:
            self.issued[key] = creds
        return key, creds

    def lookup(self, access_key):
        with self.lock:
            creds = self.issued.get(access_key)
        if creds is None or creds["expires"] <= time.time():
            return None
        return creds["secret"], creds["token"]


def iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_handler(state, instance_ttl):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, status, data, ctype="application/json", headers=()):
            if isinstance(data, (dict, list)):
                data = json.dumps(data)
            data = data.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            if path.startswith("/latest/"):
                return self.imds(path)
            if path == "/ecs/credentials":
                return self.ecs()
            if path == "/" and self.command == "POST":
                return self.sts(body)
            invoke = INVOKE.match(path)
            if invoke:
                return self.invoke(invoke.group(1), body)
            if path == "/_control/stats":
                with state.lock:
                    return self.send(200, state.stats)
            if path == "/_control/issued":  # every secret handed out, for the test to look for leaks
                with state.lock:
                    secrets_out = [c["secret"] for c in state.issued.values()]
                    secrets_out += [c["token"] for c in state.issued.values()]
                    secrets_out += sorted(state.imds_tokens)
                return self.send(200, {"secrets": secrets_out})
            if path == "/_control/open-imds":
                port = json.loads(body)["port"]
                serve(("127.0.0.1", port), self.server.imds_handler)
                return self.send(200, {"port": port})
            return self.send(404, {"message": "no such route"})

        # --- IMDSv2 ---------------------------------------------------------------------------
        def imds(self, path):
            with state.lock:
                state.stats["imds_calls"] += 1
            if path == "/latest/api/token":
                if self.command != "PUT" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self.send(400, "", "text/plain")
                token = "imds-" + secrets.token_urlsafe(24)
                with state.lock:
                    state.imds_tokens.add(token)
                return self.send(200, token, "text/plain")
            with state.lock:
                known = self.headers.get("X-aws-ec2-metadata-token") in state.imds_tokens
            if self.command != "GET" or not known:
                return self.send(401, "", "text/plain")  # IMDSv1 (no token) is refused
            prefix = "/latest/meta-data/iam/security-credentials/"
            if path == prefix:
                return self.send(200, INSTANCE_ROLE + "\n", "text/plain")
            if path == prefix + INSTANCE_ROLE:
                key, creds = state.issue("instance", INSTANCE_ROLE, instance_ttl)
                return self.send(200, {"Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC",
                                       "AccessKeyId": key, "SecretAccessKey": creds["secret"],
                                       "Token": creds["token"], "Expiration": iso(creds["expires"])})
            return self.send(404, "", "text/plain")

        # --- ECS ------------------------------------------------------------------------------
        def ecs(self):
            with state.lock:
                state.stats["ecs_calls"] += 1
            if self.headers.get("Authorization") != ECS_TOKEN:
                return self.send(401, {"message": "bad authorization token"})
            key, creds = state.issue("container", "ecs-task-role", 6 * 3600)
            return self.send(200, {"RoleArn": "arn:aws:iam::%s:role/ecs-task-role" % ACCOUNT, "AccessKeyId": key,
                                   "SecretAccessKey": creds["secret"], "Token": creds["token"],
                                   "Expiration": iso(creds["expires"])})

        # --- STS ------------------------------------------------------------------------------
        def sts_error(self, status, code, message):
            xml = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                   "<Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>"
                   % (code, message, secrets.token_hex(8)))
            return self.send(status, xml, "text/xml")

        def sts(self, body):
            # Calls in flight are counted per role: one role's refresh may overlap another's, but
            # never a second refresh of the same credentials.
            role = dict(urllib.parse.parse_qsl(body.decode(errors="replace"))).get("RoleArn", "")
            with state.lock:
                in_flight = state.stats["sts_in_flight"]
                in_flight[role] = in_flight.get(role, 0) + 1
                most = state.stats["sts_max_in_flight"]
                most[role] = max(most.get(role, 0), in_flight[role])
            try:
                time.sleep(state.sts_delay)
                return self.sts_answer(body)
            finally:
                with state.lock:
                    in_flight[role] -= 1

        def sts_answer(self, body):
            problem = sigv4_problem(self, body, "sts", None, state.lookup)
            key = self.headers.get("Authorization", "").split("Credential=")[-1].split("/")[0]
            form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
            call = {"source_key": key, "role": form.get("RoleArn"), "external_id": form.get("ExternalId"),
                    "session_name": form.get("RoleSessionName"), "duration": form.get("DurationSeconds"),
                    "problem": problem}
            with state.lock:
                call["source_kind"] = state.issued.get(key, {}).get("kind")
                call["source_role"] = state.issued.get(key, {}).get("role")
                state.stats["sts_calls"].append(call)
            if problem:
                return self.sts_error(403, "SignatureDoesNotMatch", problem)
            if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                return self.sts_error(400, "InvalidParameterValue", "form body expected")
            if form.get("Action") != "AssumeRole" or form.get("Version") != "2011-06-15":
                return self.sts_error(400, "InvalidAction", "Could not find operation %s" % form.get("Action"))
            arn = form.get("RoleArn", "")
            prefix = "arn:aws:iam::%s:role/" % ACCOUNT
            if not arn.startswith(prefix) or not form.get("RoleSessionName"):
                return self.sts_error(400, "ValidationError", "RoleArn and RoleSessionName are required")
            name = arn[len(prefix):]
            if name == "denied" or (name.startswith("external-") and form.get("ExternalId") != "ext-123"):
                return self.sts_error(403, "AccessDenied", "User: %s is not authorized to perform: sts:AssumeRole "
                                      "on resource: %s" % (call["source_role"], arn))
            ttl = 303 if name.startswith("short-") else int(form.get("DurationSeconds") or 3600)
            new_key, creds = state.issue("role", name, ttl)
            xml = ('<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
                   "<AssumedRoleUser><Arn>arn:aws:sts::%s:assumed-role/%s/%s</Arn><AssumedRoleId>AROA1:%s"
                   "</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>%s</AccessKeyId>"
                   "<SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>"
                   "<Expiration>%s</Expiration></Credentials></AssumeRoleResult><ResponseMetadata>"
                   "<RequestId>%s</RequestId></ResponseMetadata></AssumeRoleResponse>"
                   % (ACCOUNT, name, form["RoleSessionName"], form["RoleSessionName"], new_key, creds["secret"],
                      creds["token"], iso(creds["expires"]), secrets.token_hex(8)))
            return self.send(200, xml, "text/xml")

        # --- Lambda ---------------------------------------------------------------------------
        def invoke(self, function, body):
            problem = sigv4_problem(self, body, "lambda", "us-east-1", state.lookup)
            key = self.headers.get("Authorization", "").split("Credential=")[-1].split("/")[0]
            with state.lock:
                if problem:
                    state.stats["rejected"].append({"key": key, "problem": problem})
                else:
                    creds = state.issued[key]
                    state.stats["lambda_calls"].append({"key": key, "kind": creds["kind"], "role": creds["role"],
                                                        "session_token": bool(self.headers.get("X-Amz-Security-Token"))})
            if problem:
                return self.send(403, {"message": problem}, headers=[("x-amzn-ErrorType", "InvalidSignatureException")])
            return self.send(200, {"function": function, "event": json.loads(body) if body else None})

        do_GET = do_POST = do_PUT = handle_any

    return Handler


def serve(address, handler, tls=None):
    server = http.server.ThreadingHTTPServer(address, handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.imds_handler = handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--imds-late", action="store_true", help="open the IMDS port only when asked")
    parser.add_argument("--instance-ttl", type=int, default=6 * 3600)
    parser.add_argument("--sts-delay", type=float, default=0.0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve the main port (STS, Lambda) over TLS")
    args = parser.parse_args()
    state = State(args.sts_delay)
    handler = make_handler(state, args.instance_ttl)
    main_server = serve(("127.0.0.1", 0), handler, args.tls)
    imds_port = 0 if args.imds_late else serve(("127.0.0.1", 0), handler).server_address[1]
    print("PORT %d %d" % (main_server.server_address[1], imds_port), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
