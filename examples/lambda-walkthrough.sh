#!/usr/bin/env bash
# The seed tutorial ("give a third party one Lambda function, then take it back") on one machine:
# a local stand-in for AWS Lambda that checks every SigV4 signature with botocore (an AWS
# implementation independent of membraned), a membraned with its own throwaway data directory,
# and every step of the tutorial with curl. Each step prints what it sent and what came back, and
# the script stops with an error the moment an answer differs from the tutorial's.
#
#   examples/lambda-walkthrough.sh            # installs what is missing and builds first
#   MEMBRANED_BIN=path/to/membraned examples/lambda-walkthrough.sh   # use an existing build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${MEMBRANED_BIN:-}" ]; then
  source "$ROOT/scripts/setup.sh"
  membraned_install_packages
  membraned_build release
  MEMBRANED_BIN="$ROOT/build/release/server/membraned"
fi

WORK="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The AWS key pair the owner holds. Only membraned and the fake Lambda ever see the secret.
ACCESS_KEY=AKIAIOSFODNN7EXAMPLE
SECRET="wJalrXUtnFEMI/K7MDENG/bPxRfiCY$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

json() {  # json FILE PATH.TO.FIELD -> the field's value
  python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}
token() { printf '%s' "${1#*#}"; }  # the CPBLTY1-... part of a cpblty:// URI

step=0
# call EXPECTED_STATUS TITLE curl-arguments...: runs curl, prints the exchange, checks the status.
call() {
  local expected="$1" title="$2"
  shift 2
  step=$((step + 1))
  printf '\n== %d. %s\n$ curl %s\n' "$step" "$title" "$*" | sed -E 's/(CPBLTY1-[A-Za-z0-9_-]{6})[A-Za-z0-9_-]*/\1.../g'
  local status
  status="$(curl -sS -o "$WORK/answer" -w '%{http_code}' "$@")"
  printf '%s %s\n' "$status" "$(cat "$WORK/answer")"
  if [ "$status" != "$expected" ]; then
    echo "walkthrough: step $step answered $status, the tutorial expects $expected" >&2
    exit 1
  fi
}

# 1. The stand-in for Lambda: POST /2015-03-31/functions/NAME/invocations, 403 on a bad signature.
/usr/bin/python3 "$ROOT/tests/integration/fake_aws.py" --access-key "$ACCESS_KEY" --secret "$SECRET" \
  >"$WORK/fake.out" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^PORT ' "$WORK/fake.out" 2>/dev/null && break; sleep 0.1; done
LAMBDA_URL="http://127.0.0.1:$(awk '/^PORT /{print $2}' "$WORK/fake.out")"
echo "fake Lambda listening on $LAMBDA_URL"

# 2. membraned, with its data in a throwaway directory.
"$MEMBRANED_BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/var" >"$WORK/membraned.out" 2>"$WORK/membraned.log" &
pids+=($!)
for _ in $(seq 1 200); do grep -q 'listening on' "$WORK/membraned.out" 2>/dev/null && break; sleep 0.1; done
URL="$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/membraned.out" | head -1)"
echo "$(head -1 "$WORK/membraned.out")"
TENANT="$WORK/var/first-tenant.json"
CREATE="$(token "$(json "$TENANT" capabilities.create)")"

# 3. The owner creates a membrane; its export and revoke capabilities come back.
call 201 "Create a membrane" -XPOST "$URL" -H "Authorization: Bearer $CREATE" -d '{"id":"my-aws-lambda-membrane"}'
cp "$WORK/answer" "$WORK/membrane.json"
EXPORT="$(token "$(json "$WORK/membrane.json" capabilities.export)")"
REVOKE="$(token "$(json "$WORK/membrane.json" capabilities.revoke)")"

# 4. The owner exports a capability for one function through it. The secret goes in, never out.
call 201 "Export a capability to invoke my-function" -XPOST "$URL" -H "Authorization: Bearer $EXPORT" -d '{
  "uri": "'"$LAMBDA_URL"'/2015-03-31/functions/my-function/invocations",
  "method": "POST",
  "headers": {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "None"},
  "hmac": {"aws4-hmac-sha256": {"awsAccessKeyId": "'"$ACCESS_KEY"'", "secretAccessKey": "'"$SECRET"'",
                                "region": "us-east-1", "service": "lambda"}}}'
if grep -q "$SECRET" "$WORK/answer"; then echo "walkthrough: the secret came back" >&2; exit 1; fi
LAMBDA_URI="$(json "$WORK/answer" capability)"
LAMBDA="$(token "$LAMBDA_URI")"

# 5. The third party, holding only that token, invokes the function.
call 200 "Invoke the function with the capability" -XPOST "$URL" -H "Authorization: Bearer $LAMBDA" \
  -H 'Content-Type: application/json' -d '{"hello":"world"}'

# 6. Delegation: the capability is re-exported through a second membrane for a partner, so the
#    partner's access can be taken back on its own.
call 201 "Create a second membrane for a partner" -XPOST "$URL" -H "Authorization: Bearer $CREATE" -d '{"id":"partner"}'
cp "$WORK/answer" "$WORK/partner.json"
call 201 "Re-export the Lambda capability through it" -XPOST "$URL" \
  -H "Authorization: Bearer $(token "$(json "$WORK/partner.json" capabilities.export)")" \
  -d '{"capability":"'"$LAMBDA_URI"'"}'
PARTNER="$(token "$(json "$WORK/answer" capability)")"
call 200 "The partner invokes through the re-export" -XPOST "$URL" -H "Authorization: Bearer $PARTNER" -d '{"from":"partner"}'

# 7. Take the partner's power back; the original holder keeps theirs.
call 202 "Revoke the partner's membrane" "$URL" \
  -H "Authorization: Bearer $(token "$(json "$WORK/partner.json" capabilities.revoke)")"
call 401 "The partner's capability is dead" -XPOST "$URL" -H "Authorization: Bearer $PARTNER" -d '{}'
call 200 "The original capability still works" -XPOST "$URL" -H "Authorization: Bearer $LAMBDA" -d '{}'

# 8. Revoke the first membrane: everything exported through it is dead, at once and for good.
call 202 "Revoke the membrane" "$URL" -H "Authorization: Bearer $REVOKE"
call 401 "The Lambda capability is dead" -XPOST "$URL" -H "Authorization: Bearer $LAMBDA" -d '{"hello":"world"}'

echo
echo "walkthrough: all $step steps answered as the tutorial says"
