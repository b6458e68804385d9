# The slolab image for `slolab k8s render` (shards and collector run it):
# build on Debian bookworm, run on bookworm-slim as a non-root user.
#   docker build -t slolab:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin slolab \
    && cp build/release/slolab /slolab

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 slolab \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /work slolab \
    && install -d -o slolab -g slolab /work
COPY --from=build /slolab /usr/local/bin/slolab
# Numeric, so that the pods' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["slolab"]
CMD ["--help"]
