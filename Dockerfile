# Multi-stage build on Debian 12 with the same set-up script the README uses.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh release

FROM debian:12-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libssl3 libsqlite3-0 libboost-url1.81.0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/membraned --create-home membraned
COPY --from=build /src/build/release/server/membraned /usr/local/bin/membraned
USER membraned
WORKDIR /var/lib/membraned
VOLUME ["/var/lib/membraned"]
EXPOSE 8080
# Plain HTTP inside the container, for a TLS-terminating proxy in front; give --tls-cert and
# --tls-key (mounted files) to serve HTTPS directly. The data directory is the volume.
ENTRYPOINT ["/usr/local/bin/membraned"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/membraned", "--allow-plain-http"]
