#!/usr/bin/env bash
# The tutorial of docs/tutorial.md ("give a third party one Lambda function, then take it back")
# on one machine: a local stand-in for AWS Lambda that checks every SigV4 signature with botocore
# (an AWS implementation independent of membraned), a membraned with its own throwaway data directory,
# and every step of the tutorial twice: first with curl, then with capi, the command-line client
# (config import, membrane create, export, re-export, query and revoke, a grant for a day and 100
# uses and its own revoke, the list of what was handed out and one grant shown, invocations with
# both `capi invoke` and curl). Each step prints what it sent and what came back, and the script
# stops with an error the moment an answer differs from the tutorial's.
#
#   examples/lambda-walkthrough.sh            # installs what is missing and builds first
#   MEMBRANED_BIN=path/to/membraned CAPI_BIN=path/to/capi examples/lambda-walkthrough.sh
#                                             # use an existing build
# Against a membraned that already runs (a container, say: scripts/container-test.sh) instead of
# one of its own, on a store no one else has used (the membrane ids are fixed), opened with
# --allow-upstream 127.0.0.0/8 and writing an audit log:
#   WALKTHROUGH_SERVICE_URL=http://127.0.0.1:PORT WALKTHROUGH_TENANT_FILE=.../first-tenant.json \
#   WALKTHROUGH_AUDIT_LOG=.../audit.log CAPI_BIN=path/to/capi examples/lambda-walkthrough.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE_URL="${WALKTHROUGH_SERVICE_URL:-}"
if [ -n "$SERVICE_URL" ]; then
  : "${WALKTHROUGH_TENANT_FILE:?the running service's first-tenant.json}"
  : "${WALKTHROUGH_AUDIT_LOG:?the running service's audit log (--audit-log)}"
elif [ -z "${MEMBRANED_BIN:-}" ]; then
  source "$ROOT/scripts/setup.sh"
  membraned_install_packages build runtime tutorial
  membraned_build release
  MEMBRANED_BIN="$ROOT/build/release/server/membraned"
fi
CAPI_BIN="${CAPI_BIN:-$ROOT/build/release/cli/capi}"
if [ ! -x "$CAPI_BIN" ]; then
  echo "walkthrough: no capi at $CAPI_BIN (build it, or set CAPI_BIN)" >&2
  exit 1
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

# 2. membraned, with its data in a throwaway directory and an audit log beside it.
# The fake Lambda is on loopback, which exports may not reach unless the operator opens it.
if [ -n "$SERVICE_URL" ]; then
  URL="$SERVICE_URL"
  TENANT="$WALKTHROUGH_TENANT_FILE"
  AUDIT_LOG="$WALKTHROUGH_AUDIT_LOG"
  echo "membraned already running at $URL"
else
  "$MEMBRANED_BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/var" --init --allow-upstream 127.0.0.0/8 \
    --audit-log "$WORK/audit.log" >"$WORK/membraned.out" 2>"$WORK/membraned.log" &
  pids+=($!)
  for _ in $(seq 1 200); do grep -q 'listening on' "$WORK/membraned.out" 2>/dev/null && break; sleep 0.1; done
  URL="$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/membraned.out" | head -1)"
  echo "$(head -1 "$WORK/membraned.out")"
  TENANT="$WORK/var/first-tenant.json"
  AUDIT_LOG="$WORK/audit.log"
fi
CREATE="$(token "$(json "$TENANT" capabilities.create)")"
QUERY="$(token "$(json "$TENANT" capabilities.query)")"

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

# 8. A grant that ends by itself (contract §11-12): the Lambda capability re-exported for a
#    partner through the same membrane, for a day and 100 uses; then that one grant revoked, with
#    the revoke capability its export answered, and nothing else.
EXPIRES_AT="$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)"
call 201 "Export a day-long, 100-use grant for a partner" -XPOST "$URL" -H "Authorization: Bearer $EXPORT" \
  -d '{"capability":"'"$LAMBDA_URI"'","label":"partner","expiresAt":"'"$EXPIRES_AT"'","maxUses":100}'
check_grant() {  # check_grant FILE: the 201 of a day-long, 100-use grant labelled partner
  python3 - "$1" <<'PY' || { echo "walkthrough: step $step: not the grant the tutorial shows" >&2; exit 1; }
import datetime, json, re, sys
g = json.load(open(sys.argv[1]))
assert re.fullmatch(r"g_[0-9a-f]{24}", g["id"]), g
assert g["revoke"].startswith("cpblty://") and g["revoke"] != g["capability"], g
assert (g["label"], g["maxUses"]) == ("partner", 100), g
expires = datetime.datetime.fromisoformat(g["expiresAt"].replace("Z", "+00:00"))
left = expires - datetime.datetime.now(datetime.timezone.utc)
assert datetime.timedelta(hours=23, minutes=55) < left <= datetime.timedelta(days=1), g
PY
}
check_grant "$WORK/answer"
GRANT_ID="$(json "$WORK/answer" id)"
GRANT="$(token "$(json "$WORK/answer" capability)")"
GRANT_REVOKE="$(token "$(json "$WORK/answer" revoke)")"
call 200 "The partner invokes with the grant" -XPOST "$URL" -H "Authorization: Bearer $GRANT" -d '{"from":"partner"}'
call 202 "Revoke just that grant" "$URL" -H "Authorization: Bearer $GRANT_REVOKE"
call 401 "The partner's grant is dead" -XPOST "$URL" -H "Authorization: Bearer $GRANT" -d '{"from":"partner"}'
call 200 "The original capability still works" -XPOST "$URL" -H "Authorization: Bearer $LAMBDA" -d '{}'
call 201 "The membrane still exports" -XPOST "$URL" -H "Authorization: Bearer $EXPORT" \
  -d '{"capability":"'"$LAMBDA_URI"'"}'
call 200 "And what it exports works" -XPOST "$URL" \
  -H "Authorization: Bearer $(token "$(json "$WORK/answer" capability)")" -d '{}'

# 9. What was handed out through the membrane (the inventory, with the tenant's query capability),
#    and the partner's grant alone: revoked, labelled, with its one use.
call 200 "List what was handed out through the membrane" -G "$URL" -H "Authorization: Bearer $QUERY" \
  --data-urlencode "exportsOf=my-aws-lambda-membrane" -d limit=1000
check_inventory() {  # check_inventory FILE GRANT_ID: three grants, the partner's revoked among them
  python3 - "$1" "$2" <<'PY' || { echo "walkthrough: step $step: not the list the tutorial shows" >&2; exit 1; }
import json, sys
listed = json.load(open(sys.argv[1]))
assert listed["completed"] is True, listed
ids = [e["id"] for e in listed["exports"]]
assert ids == sorted(ids) and len(ids) == 3 and sys.argv[2] in ids, ids
grant = next(e for e in listed["exports"] if e["id"] == sys.argv[2])
assert (grant["label"], grant["kind"], grant["maxUses"], grant["revoked"]) == ("partner", "reexport", 100, True), grant
PY
}
check_inventory "$WORK/answer" "$GRANT_ID"
call 200 "Show the partner's grant" -G "$URL" -H "Authorization: Bearer $QUERY" --data-urlencode "grant=$GRANT_ID"
expect_grant() {  # expect_grant FILE GRANT_ID: {"exports": [that grant], "completed": true} or the entry alone
  python3 - "$1" "$2" <<'PY' || { echo "walkthrough: step $step: not the grant the tutorial shows" >&2; exit 1; }
import json, sys
g = json.load(open(sys.argv[1]))
if "exports" in g:
    assert g["completed"] is True and len(g["exports"]) == 1, g
    g = g["exports"][0]
assert (g["id"], g["label"], g["revoked"]) == (sys.argv[2], "partner", True), g
assert g["revokedAt"] and g["expiresAt"] and g["maxUses"] == 100, g
PY
}
expect_grant "$WORK/answer" "$GRANT_ID"

# 10. Revoke the first membrane: everything exported through it is dead, at once and for good.
call 202 "Revoke the membrane" "$URL" -H "Authorization: Bearer $REVOKE"
call 401 "The Lambda capability is dead" -XPOST "$URL" -H "Authorization: Bearer $LAMBDA" -d '{"hello":"world"}'

# ---------------------------------------------------------------------------------------------
# The same tutorial with capi. Its credentials live in a throwaway HOME; it talks plain HTTP to
# this loopback membraned only because the profile says so (config import --plain-http).
CAPI_HOME="$WORK/home"
mkdir -p "$CAPI_HOME"

# capi_step EXPECTED_EXIT TITLE capi-arguments...: runs capi, prints the exchange, checks the exit
# status; its stdout is in $WORK/out, its stderr in $WORK/err.
capi_step() {
  local expected="$1" title="$2"
  shift 2
  step=$((step + 1))
  local shown="$*"
  shown="${shown//"$SECRET"/<secret>}"  # the command line holds the AWS secret: not shown
  printf '\n== %d. %s\n$ capi %s\n' "$step" "$title" "$shown" | sed -E 's/(CPBLTY1-[A-Za-z0-9_-]{6})[A-Za-z0-9_-]*/\1.../g'
  local code=0
  HOME="$CAPI_HOME" "$CAPI_BIN" "$@" >"$WORK/out" 2>"$WORK/err" || code=$?
  sed -E 's/(CPBLTY1-[A-Za-z0-9_-]{6})[A-Za-z0-9_-]*/\1.../g' "$WORK/out"
  if [ -s "$WORK/out" ] && [ -n "$(tail -c1 "$WORK/out")" ]; then echo; fi
  sed -E 's/(CPBLTY1-[A-Za-z0-9_-]{6})[A-Za-z0-9_-]*/\1.../g' "$WORK/err"
  echo "(exit $code)"
  if [ "$code" != "$expected" ]; then
    echo "walkthrough: step $step exited $code, expected $expected" >&2
    exit 1
  fi
}
# expect FILE TEXT: the step's output must contain TEXT.
expect() {
  if ! grep -qF -- "$2" "$1"; then
    echo "walkthrough: step $step: \"$2\" not found in its output" >&2
    exit 1
  fi
}

capi_step 0 "capi: import the first tenant as the default profile" config import --plain-http "$TENANT"
expect "$WORK/out" 'profile "default"'
if [ "$(stat -c %a "$CAPI_HOME/.capability/credentials")" != 600 ]; then
  echo "walkthrough: ~/.capability/credentials is not 0600" >&2
  exit 1
fi

capi_step 0 "capi: create a membrane (the create capability comes from the profile)" \
  membrane create --id capi-lambda-membrane
cp "$WORK/out" "$WORK/capi-membrane.json"
expect "$WORK/out" '"id": "capi-lambda-membrane"'
C_EXPORT="$(json "$WORK/capi-membrane.json" capabilities.export)"
C_REVOKE="$(json "$WORK/capi-membrane.json" capabilities.revoke)"

# The secret goes in from a file, so that it is never on a command line (ps, shell history).
(umask 077; printf '%s\n' "$SECRET" >"$WORK/aws-secret")
capi_step 0 "capi: export a capability to invoke my-function" membrane export --capability "$C_EXPORT" \
  --uri "$LAMBDA_URL/2015-03-31/functions/my-function/invocations" --method POST \
  --header "X-Amz-Invocation-Type: RequestResponse" --header "X-Amz-Log-Type: None" \
  --aws4-hmac-sha256-aws-access-key-id "$ACCESS_KEY" --aws4-hmac-sha256-secret-access-key "@$WORK/aws-secret" \
  --aws4-hmac-sha256-region us-east-1 --aws4-hmac-sha256-service lambda
if grep -q "$SECRET" "$WORK/out" "$WORK/err"; then echo "walkthrough: the secret came back" >&2; exit 1; fi
C_LAMBDA_URI="$(json "$WORK/out" capability)"

capi_step 0 "capi: invoke the function" invoke --capability "$C_LAMBDA_URI" \
  --header 'Content-Type: application/json' --data '{"hello":"capi"}'
expect "$WORK/out" '"function": "my-function"'
expect "$WORK/out" '"hello": "capi"'
call 200 "curl: invoke the same capability" -XPOST "$URL" -H "Authorization: Bearer $(token "$C_LAMBDA_URI")" \
  -d '{"hello":"curl"}'
expect "$WORK/answer" '"hello": "curl"'

capi_step 1 "capi: the revoke capability given to export by mistake: refused, nothing revoked" \
  membrane export --capability "$C_REVOKE" --uri "$LAMBDA_URL/2015-03-31/functions/my-function/invocations"
expect "$WORK/err" "The capability given is a membrane's revoke capability"
expect "$WORK/err" "Nothing was done."

capi_step 0 "capi: create a second membrane for a partner" membrane create --id capi-partner
C_PARTNER_EXPORT="$(json "$WORK/out" capabilities.export)"
C_PARTNER_REVOKE="$(json "$WORK/out" capabilities.revoke)"
capi_step 0 "capi: re-export the Lambda capability through it" membrane export \
  --capability "$C_PARTNER_EXPORT" --capability-to-export "$C_LAMBDA_URI"
C_PARTNER_URI="$(json "$WORK/out" capability)"
capi_step 0 "capi: the partner invokes through the re-export" invoke --capability "$C_PARTNER_URI" \
  --data '{"from":"partner"}'
expect "$WORK/out" '"from": "partner"'
call 200 "curl: the partner invokes through the re-export" -XPOST "$URL" \
  -H "Authorization: Bearer $(token "$C_PARTNER_URI")" -d '{"from":"partner"}'

capi_step 0 "capi: list the membranes" membrane query --limit 10
expect "$WORK/out" '"id": "capi-lambda-membrane"'
expect "$WORK/out" '"id": "capi-partner"'

capi_step 0 "capi: revoke the partner's membrane" membrane revoke --capability "$C_PARTNER_REVOKE"
expect "$WORK/out" '"statusCode": 202'
capi_step 1 "capi: the partner's capability is dead" invoke --capability "$C_PARTNER_URI" --data '{}'
expect "$WORK/err" "401"
call 401 "curl: the partner's capability is dead" -XPOST "$URL" -H "Authorization: Bearer $(token "$C_PARTNER_URI")" -d '{}'
capi_step 0 "capi: the original capability still works" invoke --capability "$C_LAMBDA_URI" --data '{}'

capi_step 0 "capi: export a day-long, 100-use grant for a partner" membrane export \
  --capability "$C_EXPORT" --capability-to-export "$C_LAMBDA_URI" --expires-in 1d --max-uses 100 --label partner
check_grant "$WORK/out"
C_GRANT_ID="$(json "$WORK/out" id)"
C_GRANT_URI="$(json "$WORK/out" capability)"
C_GRANT_REVOKE="$(json "$WORK/out" revoke)"
capi_step 0 "capi: the partner invokes with the grant" invoke --capability "$C_GRANT_URI" --data '{"from":"partner"}'
expect "$WORK/out" '"from": "partner"'
capi_step 0 "capi: revoke just that grant" grant revoke --capability "$C_GRANT_REVOKE"
expect "$WORK/out" '"statusCode": 202'
capi_step 1 "capi: the partner's grant is dead" invoke --capability "$C_GRANT_URI" --data '{"from":"partner"}'
expect "$WORK/err" "401"
call 401 "curl: the partner's grant is dead" -XPOST "$URL" -H "Authorization: Bearer $(token "$C_GRANT_URI")" -d '{}'
capi_step 0 "capi: the original capability still works" invoke --capability "$C_LAMBDA_URI" --data '{}'
capi_step 0 "capi: the membrane still exports" membrane export --capability "$C_EXPORT" \
  --capability-to-export "$C_LAMBDA_URI"
capi_step 0 "capi: and what it exports works" invoke --capability "$(json "$WORK/out" capability)" --data '{}'

capi_step 0 "capi: list what was handed out through the membrane" membrane exports \
  --id capi-lambda-membrane --all --table
expect "$WORK/out" "$C_GRANT_ID  partner  reexport"
expect "$WORK/out" "STATE"
if [ "$(wc -l <"$WORK/out")" != 4 ]; then
  echo "walkthrough: step $step: not a header and three grants" >&2
  exit 1
fi
capi_step 0 "capi: the same list as JSON" membrane exports --id capi-lambda-membrane --all
check_inventory "$WORK/out" "$C_GRANT_ID"
capi_step 0 "capi: show the partner's grant" grant show "$C_GRANT_ID"
expect "$WORK/out" "\"id\": \"$C_GRANT_ID\""
expect_grant "$WORK/out" "$C_GRANT_ID"
capi_step 0 "capi: the partner's grant as a table" grant show "$C_GRANT_ID" --table
expect "$WORK/out" "$C_GRANT_ID"
expect "$WORK/out" "revoked     yes"
capi_step 1 "capi: no grant has this id" grant show g_000000000000000000000000
expect "$WORK/err" 'No grant with id "g_000000000000000000000000"'

# wait_for_audit COUNT [jq arguments] FILTER: until the audit log holds COUNT records the filter
# selects (the writer lets a batch gather for up to 20 ms before writing it), for at most 5 s.
wait_for_audit() {
  local count="$1"
  shift
  for _ in $(seq 1 50); do
    [ "$(jq -c "$@" "$AUDIT_LOG" | wc -l)" -ge "$count" ] && return
    sleep 0.1
  done
}

# The audit trail of the partner's grant: its use, its revoke, and the attempts after it (those
# carry the grant's token log id: a token that no longer resolves names no grant).
step=$((step + 1))
printf '\n== %d. %s\n' "$step" "the audit trail of the partner's grant"
GRANT_TOKEN_ID="$(jq -r --arg g "$C_GRANT_ID" 'select(.chain and (.chain | index($g))) | .token' "$AUDIT_LOG" | head -1)"
wait_for_audit 2 --arg t "$GRANT_TOKEN_ID" 'select(.token == $t and .reason == "revoked")'
jq -c --arg g "$C_GRANT_ID" --arg t "$GRANT_TOKEN_ID" \
  'select(.grant == $g or (.chain and (.chain | index($g))) or .token == $t)
   | {time, operation, grant, token, status, reason, cut}' "$AUDIT_LOG" | tee "$WORK/out"
expect "$WORK/out" '"operation":"invoke","grant":"'"$C_GRANT_ID"'","token":"'"$GRANT_TOKEN_ID"'","status":200'
expect "$WORK/out" '"operation":"revokeGrant","grant":"'"$C_GRANT_ID"'"'
expect "$WORK/out" '"status":202,"reason":null,"cut":1'
expect "$WORK/out" '"operation":"none","grant":null,"token":"'"$GRANT_TOKEN_ID"'","status":401,"reason":"revoked"'
if [ "$(wc -l <"$WORK/out")" != 4 ]; then
  echo "walkthrough: step $step: not one use, one revoke and the two refused attempts after it" >&2
  exit 1
fi

capi_step 0 "capi: revoke the membrane" membrane revoke --capability "$C_REVOKE"
expect "$WORK/out" '"message": "Accepted"'
step=$((step + 1))
printf '\n== %d. %s\n' "$step" "the audit log says what the revoke cut"
wait_for_audit 1 'select(.operation == "revoke" and .membrane == "capi-lambda-membrane")'
jq -c 'select(.operation == "revoke") | {operation, membrane, status, cut}' "$AUDIT_LOG" | tail -1 | tee "$WORK/out"
expect "$WORK/out" '"membrane":"capi-lambda-membrane","status":202,"cut":'
capi_step 1 "capi: the Lambda capability is dead" invoke --capability "$C_LAMBDA_URI" --data '{}'
expect "$WORK/err" "401"
call 401 "curl: the Lambda capability is dead" -XPOST "$URL" -H "Authorization: Bearer $(token "$C_LAMBDA_URI")" -d '{}'

capi_step 0 "capi: a membrane id is free again once revoked" membrane create --id capi-partner
capi_step 1 "capi: creating the same membrane id twice fails" membrane create --id capi-partner
expect "$WORK/err" "FAILED"
expect "$WORK/err" '"statusCode": 409'

echo
echo "walkthrough: all $step steps answered as the tutorial says"
