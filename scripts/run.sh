#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and start membraned.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
membraned_install_packages
membraned_build release
exec "$MEMBRANED_ROOT/build/release/server/membraned" "$@"
