# syntax=docker/dockerfile:1
# espgate in a container: built with DPDK ports and intel-ipsec-mb by the
# same scripts/build that .ci/run runs, then run on Debian 12 slim with
# DPDK's runtime libraries only (scripts/runtime-packages, checked against
# the binary by tests/netns/test_deploy.py).
#
#   docker build -t espgate .
#   docker run --rm espgate info
#   docker compose up --build       # a pair: docker-compose.yml
#
# The entrypoint (scripts/entrypoint) joins DPDK net_tap ports to the
# container's networks (ESPGATE_TAPS) and then becomes the node.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libdpdk-dev clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/build --release

FROM debian:bookworm-slim
COPY scripts/runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && grep -v '^#' /tmp/runtime-packages | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages
COPY --from=build /src/target/release/espgate /usr/local/bin/espgate
COPY scripts/entrypoint scripts/hugepages /usr/local/lib/espgate/
ENTRYPOINT ["/usr/local/lib/espgate/entrypoint"]
CMD ["run", "--config", "/etc/espgate/node.yaml", "--control", "/run/espgate/control.sock"]
