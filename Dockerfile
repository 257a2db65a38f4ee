# The leasehold binary in a small image: built on the official Rust image, run on
# debian:bookworm-slim as the unprivileged system user `leasehold`, state in the volume
# /var/lib/leasehold. It runs the license server by default; `node serve` runs a license
# node instead. docs/operations.md, "Docker".
#
#   docker build -t leasehold .
#   docker run -d --name leasehold-server -v leasehold:/var/lib/leasehold \
#     -p 7569:7569 -p 127.0.0.1:8080:8080 -e LEASEHOLD_SERVER_VENDOR_KEY=KEY leasehold

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p leasehold-cli

FROM debian:bookworm-slim
# ca-certificates: the sync trusts the system's roots for HTTPS nodes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/leasehold --shell /usr/sbin/nologin leasehold \
    && install -d -o leasehold -g leasehold -m 0750 \
        /var/lib/leasehold /var/lib/leasehold/server /var/lib/leasehold/node
COPY --from=build /src/target/release/leasehold /usr/bin/leasehold
# In a container the listeners face the container's own interface; publish the admin port on
# the host's loopback only (-p 127.0.0.1:8080:8080): it serves the dashboard over plain HTTP
# unless TLS is configured.
ENV LEASEHOLD_SERVER_DATA_DIR=/var/lib/leasehold/server \
    LEASEHOLD_SERVER_LISTEN=0.0.0.0:7569 \
    LEASEHOLD_SERVER_ADMIN_LISTEN=0.0.0.0:8080 \
    LEASEHOLD_NODE_DB=sqlite:///var/lib/leasehold/node/leasehold-node.db \
    LEASEHOLD_NODE_LISTEN=0.0.0.0:8470
USER leasehold
WORKDIR /var/lib/leasehold
VOLUME ["/var/lib/leasehold"]
# 7569: the client lease API; 8080: the server's admin API and dashboard; 8470: a node.
EXPOSE 7569 8080 8470
# The server's admin API answers with the token it generated into its data directory. A
# node container overrides this (docs/operations.md, "Docker").
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["leasehold", "server", "status", "--admin", "http://127.0.0.1:8080", "--token-file", "/var/lib/leasehold/server/admin-token"]
ENTRYPOINT ["leasehold"]
CMD ["server", "run"]
