#!/usr/bin/env bash
# The Dockerfile, built and run: podman builds the image (no Docker engine needed), starts it as
# shipped with MEMBRANED_AUTHORITY given, and the Lambda tutorial (examples/lambda-walkthrough.sh)
# runs against the container, with the image's own capi. ctest runs it (container_image).
#   scripts/container-test.sh             build, check the entry point, run the walkthrough
#   scripts/container-test.sh --no-build  the same with the image already built
#   scripts/container-test.sh --compose   also try deploy/compose-ha.yml with podman-compose
# MEMBRANED_IMAGE (default membraned:test) names the image. Runs as root.
#
# Where no container registry is reachable, the Dockerfile's base images (debian:12 and
# debian:12-slim) are made from Debian's own mirror with mmdebstrap (minbase) and imported.
# PODMAN_OPTIONS (default: cgroupfs and runc) and PODMAN_RUN_OPTIONS (default: low ulimits) suit
# a host without systemd whose cgroups crun refuses and whose limits are below podman's defaults.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$MEMBRANED_ROOT"

image="${MEMBRANED_IMAGE:-membraned:test}"
read -r -a podman_options <<<"${PODMAN_OPTIONS:---cgroup-manager=cgroupfs --runtime runc}"
read -r -a run_options <<<"${PODMAN_RUN_OPTIONS:---ulimit nofile=1024:1024 --ulimit nproc=1024:1024}"
podman() { command podman "${podman_options[@]}" "$@"; }
say() { echo "container-test: $*"; }
fail() { echo "container-test: FAILED: $*" >&2; exit 1; }

for tool in podman runc mmdebstrap curl jq; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/test.sh installs it: apt-get install $tool)"
done

work="$(mktemp -d /var/tmp/membraned-container-XXXXXX)"
container="membraned-test-$$"
cleanup() {
  podman rm -f -t 5 "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The base images: pulled when a registry answers, otherwise made with mmdebstrap.
base_images() {
  local ref
  for ref in docker.io/library/debian:12 docker.io/library/debian:12-slim; do
    podman image exists "$ref" && continue
    if podman pull -q "$ref" >/dev/null 2>"$work/pull.err"; then
      say "pulled $ref"
      continue
    fi
    say "cannot pull $ref ($(tail -1 "$work/pull.err")); making it from Debian's mirror with mmdebstrap"
    if ! podman image exists localhost/debian:12-minbase; then
      mmdebstrap --variant=minbase bookworm "$work/bookworm.tar"
      podman import -q "$work/bookworm.tar" localhost/debian:12-minbase >/dev/null
      rm -f "$work/bookworm.tar"
    fi
    podman tag localhost/debian:12-minbase "$ref"
  done
}

# 2. The image, from the Dockerfile as it is. --network host: RUN apt-get reaches Debian's mirror
# through the host (a sandbox that cannot make container networks needs it).
build_image() {
  local started=$SECONDS
  say "building $image from the Dockerfile (the first build takes minutes: apt-get, then the release build)"
  podman build --network host "${run_options[@]}" -t "$image" .
  say "image built in $((SECONDS - started)) s"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# 3. Without MEMBRANED_AUTHORITY the image refuses to start: its URIs would name 0.0.0.0.
check_authority_required() {
  local code=0
  podman run --rm --network host "${run_options[@]}" -e MEMBRANED_LISTEN="127.0.0.1:$(free_port)" \
    "$image" >"$work/no-authority.out" 2>&1 || code=$?
  cat "$work/no-authority.out"
  [ "$code" = 64 ] || fail "the image started without MEMBRANED_AUTHORITY (exit $code, expected 64)"
  grep -q "set MEMBRANED_AUTHORITY" "$work/no-authority.out" || fail "no word about MEMBRANED_AUTHORITY"
  podman run --rm "${run_options[@]}" "$image" membraned --version | grep -q "^membraned " ||
    fail "membraned --version does not run in the image"
  say "without MEMBRANED_AUTHORITY the image exits 64 and says why"
}

# 4. The image as shipped, with the authority clients use. The container shares the host's
# network (podman here cannot make container networks), so it listens on a free loopback port
# instead of 0.0.0.0:8080, the one setting changed; the data directory is a host folder owned by
# the image's membraned user, so that the walkthrough reads first-tenant.json and the audit log.
start_service() {
  port="$(free_port)"
  local uid gid
  uid="$(podman run --rm "${run_options[@]}" "$image" id -u)"
  gid="$(podman run --rm "${run_options[@]}" "$image" id -g)"
  mkdir -p "$work/data"
  chown "$uid:$gid" "$work/data"
  chmod 0700 "$work/data"
  podman run -d --name "$container" --network host "${run_options[@]}" \
    -e MEMBRANED_LISTEN="127.0.0.1:$port" -e MEMBRANED_AUTHORITY="127.0.0.1:$port" \
    -e MEMBRANED_ALLOW_UPSTREAM=127.0.0.0/8 -e MEMBRANED_AUDIT_LOG=/var/lib/membraned/audit.log \
    -v "$work/data:/var/lib/membraned" "$image" >/dev/null
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/healthz" || { podman logs "$container"; fail "the container does not answer /healthz"; }
  echo
  podman logs "$container"
  say "the container answers on 127.0.0.1:$port"
}

# capi from the image, for the walkthrough: its files (HOME, the tenant file) are under $work,
# mounted at the same path. It runs as root in the container because those folders are root's.
capi_from_image() {
  cat >"$work/capi" <<EOT
#!/usr/bin/env bash
exec podman ${podman_options[*]} run --rm -i --network host ${run_options[*]} --user 0 -e HOME="\$HOME" \\
  -v "$work:$work" --entrypoint /usr/local/bin/capi "$image" "\$@"
EOT
  chmod +x "$work/capi"
}

run_walkthrough() {
  capi_from_image
  mkdir -p "$work/tmp"
  TMPDIR="$work/tmp" WALKTHROUGH_SERVICE_URL="http://127.0.0.1:$port" \
    WALKTHROUGH_TENANT_FILE="$work/data/first-tenant.json" WALKTHROUGH_AUDIT_LOG="$work/data/audit.log" \
    CAPI_BIN="$work/capi" bash examples/lambda-walkthrough.sh
}

# 5. SIGTERM (podman stop) drains and exits 0; the container's log holds no token.
stop_service() {
  podman stop -t 40 "$container" >/dev/null
  local code
  code="$(podman inspect --format '{{.State.ExitCode}}' "$container")"
  podman logs "$container" >"$work/container.log" 2>&1
  [ "$code" = 0 ] || { cat "$work/container.log"; fail "the container exited $code after SIGTERM"; }
  if grep -q 'CPBLTY1-' "$work/container.log"; then fail "a token is in the container's log"; fi
  say "the container stopped with exit 0; $(wc -l <"$work/container.log") log lines, no token in them"
}

# deploy/compose-ha.yml under podman-compose, with the same flags. Debian 12's podman-compose
# (1.0.3) has no --env-file: the secrets go into its environment, where the file's ${...} read them.
try_compose() {
  command -v podman-compose >/dev/null || fail "podman-compose is missing (apt-get install podman-compose)"
  local compose=(podman-compose --podman-args="${podman_options[*]}" --podman-run-args="${run_options[*]}"
                 --podman-build-args="--network host ${run_options[*]}" -p "membraned-ha-$$" -f deploy/compose-ha.yml)
  local code=0
  MEMBRANED_MASTER_KEY="$(openssl rand -base64 32)" POSTGRES_PASSWORD="$(openssl rand -hex 24)" \
    "${compose[@]}" up -d >"$work/compose.out" 2>&1 || code=$?
  cat "$work/compose.out"
  if [ "$code" = 0 ] && grep -q "^Error" "$work/compose.out"; then code=1; fi
  if [ "$code" = 0 ]; then
    for _ in $(seq 1 60); do curl -fsS http://127.0.0.1:8080/healthz && break; sleep 1; done
    curl -fsS http://127.0.0.1:8080/healthz >/dev/null || code=1
  fi
  MEMBRANED_MASTER_KEY=x POSTGRES_PASSWORD=x "${compose[@]}" down -v >/dev/null 2>&1 || true
  # What a failed `up` (or `down`) left behind, by the project's label.
  local label="label=io.podman.compose.project=membraned-ha-$$" name
  for name in $(podman ps -a -q --filter "$label"); do podman rm -f "$name" >/dev/null 2>&1 || true; done
  for name in $(podman volume ls -q --filter "$label"); do podman volume rm "$name" >/dev/null 2>&1 || true; done
  podman network rm "membraned-ha-$$_default" >/dev/null 2>&1 || true
  [ "$code" = 0 ] || fail "deploy/compose-ha.yml did not come up under podman-compose (output above)"
  say "deploy/compose-ha.yml came up under podman-compose and answered /healthz through HAProxy"
}

if [ "${1:-}" = --no-build ]; then
  podman image exists "$image" || fail "no image $image: run without --no-build"
else
  base_images
  build_image
fi
check_authority_required
start_service
run_walkthrough
stop_service
say "the image built from the Dockerfile served the whole walkthrough"
if [[ " $* " == *" --compose "* ]]; then
  try_compose
fi
