# Multi-stage build on Debian 12 with the same set-up script the README uses.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh release

FROM debian:12-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libssl3 libboost-url1.81.0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/membraned --create-home membraned
COPY --from=build /src/build/release/server/membraned /usr/local/bin/membraned
USER membraned
WORKDIR /var/lib/membraned
VOLUME ["/var/lib/membraned"]
# The service (next release) will listen on 8080 and answer /healthz; for now the image runs
# the main job, which prints the version and a fresh capability.
ENTRYPOINT ["/usr/local/bin/membraned"]
