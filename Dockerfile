# syntax=docker/dockerfile:1
# Dockyard's image, built with BuildKit: `DOCKER_BUILDKIT=1 docker build -t dockyard:dev .`
# The same image without a daemon or network, from a release binary: `python3 image/build.py`
# (see image/build.py), equivalent but for the base's files. Both run as 65532:65532, hold registry:2's config at
# /etc/docker/registry/config.yml and work with a read-only root filesystem.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dockyard \
 && strip -o /dockyard target/release/dockyard \
 && mkdir -p /empty

# distroless/cc: glibc, libgcc, CA certificates and the nonroot (65532) user, nothing else.
FROM ${BASE_IMAGE}
COPY --from=build /dockyard /usr/local/bin/dockyard
COPY image/config.yml /etc/docker/registry/config.yml
COPY --from=build --chown=65532:65532 /empty /var/lib/registry
USER 65532:65532
EXPOSE 5000
VOLUME ["/var/lib/registry"]
ENTRYPOINT ["/usr/local/bin/dockyard"]
CMD ["serve", "/etc/docker/registry/config.yml"]
