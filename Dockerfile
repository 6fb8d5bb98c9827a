# cidfs daemon image; deploy/compose/README.md runs three of them as a private swarm.
#   docker build -t cidfs:local .
# The container needs /dev/fuse and CAP_SYS_ADMIN to mount images (see deploy/compose/compose.yaml).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cidfs

FROM debian:bookworm-slim
# fuse3: fusermount3, the fallback when mount(2) is refused; ca-certificates: image push from
# HTTPS registries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fuse3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cidfs /usr/local/bin/cidfs
ENV CIDFS_PATH=/var/lib/cidfs
# libp2p, HTTP API (+ /metrics), registry endpoint
EXPOSE 4001 5001 5050
ENTRYPOINT ["cidfs"]
CMD ["daemon"]
