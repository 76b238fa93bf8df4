# membraned and capi, built on Debian 12 with the same set-up script the README uses, run as a
# non-root user with the data directory as a volume. MEMBRANED_AUTHORITY is required: it is the
# HOST:PORT clients use to reach the container, written into every capability URI (the container's
# own 0.0.0.0:8080 is no address a client can use). Without it, serve and tenant exit 64.
#   docker build -t membraned .
#   docker run -d -p 127.0.0.1:8080:8080 -e MEMBRANED_AUTHORITY=127.0.0.1:8080 \
#     -v membraned-data:/var/lib/membraned membraned
#   docker exec <container> cat /var/lib/membraned/first-tenant.json
#   docker exec <container> capi --help
# scripts/container-test.sh builds this file with podman and runs the tutorial against it.
FROM debian:12 AS build
WORKDIR /src
# The packages first, in a layer of their own that a change to the sources does not redo.
COPY scripts/setup.sh scripts/setup.sh
RUN bash -c 'source scripts/setup.sh && membraned_install_packages build runtime'
COPY . .
RUN ./scripts/setup.sh release \
 && strip build/release/server/membraned build/release/cli/capi

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl3 libsqlite3-0 libpq5 libboost-url1.81.0 libprometheus-cpp-core1.0 libyaml-cpp0.7 libexpat1 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/membraned --create-home --shell /usr/sbin/nologin membraned
COPY --from=build /src/build/release/server/membraned /usr/local/bin/membraned
COPY --from=build /src/build/release/cli/capi /usr/local/bin/capi
COPY deploy/container-entrypoint.sh /usr/local/bin/membraned-entrypoint
USER membraned
WORKDIR /var/lib/membraned
VOLUME ["/var/lib/membraned"]
EXPOSE 8080
# Plain HTTP inside the container, for a TLS-terminating proxy in front; give --tls-cert and
# --tls-key (mounted files) to serve HTTPS directly, and MEMBRANED_MASTER_KEY (a secret) to keep
# the master key out of the volume. /healthz needs no capability and answers 503 when the store
# does not answer.
ENV MEMBRANED_LISTEN=0.0.0.0:8080 \
    MEMBRANED_DATA_DIR=/var/lib/membraned \
    MEMBRANED_ALLOW_PLAIN_HTTP=true
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/membraned-entrypoint"]
CMD ["serve"]
