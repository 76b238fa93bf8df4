#!/usr/bin/env bash
# End-to-end test of membraned with the original Node SDK capability-sdk (pinned in
# package-lock.json). Needs node/npm, openssl, and MEMBRANED_BINARY set to the membraned executable;
# sdk_tutorial.test.js also needs a Python with botocore (FAKE_AWS_PYTHON, default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -d node_modules || node_modules -ot package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

exec node --test sdk_e2e.test.js sdk_tutorial.test.js
