# Two stages: build with the Rust toolchain, run on a slim Debian with only the binary.
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.
#   docker build -t leavemsg .
#   docker run --rm -e DATABASE_URL=postgres://... -p 8080:8080 leavemsg
# The image has no PostgreSQL server programs: DATABASE_URL is required.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Queries are checked against the committed .sqlx/ data: the build needs no database.
ENV SQLX_OFFLINE=true
# Only what the build reads, so edits to docs, tests or scripts do not invalidate this stage.
# The migrations are embedded into the binary at compile time (sqlx::migrate!), the pages'
# assets too (src/pages/assets); crates/embedded-pg is a workspace member.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY crates crates
COPY src src
# Dependencies are cached across builds in BuildKit cache mounts: the downloaded crates and the
# target folder (compiled dependencies included) survive a source change, so a rebuild
# compiles only the workspace's own crates. A cache mount is not part of the image, hence the
# copy out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin leavemsg \
    && install -m 0755 target/release/leavemsg /usr/local/bin/leavemsg

FROM debian:bookworm-slim
# CA certificates: to verify a managed PostgreSQL's certificate (sslmode=verify-full). Not
# pinned to a version: a rebuild should pick up Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A numeric, unprivileged user, so that Kubernetes' runAsNonRoot can verify it without
# looking the name up: uid and gid 10001, no home, no shell.
RUN groupadd --system --gid 10001 leavemsg \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin leavemsg
COPY --from=build /usr/local/bin/leavemsg /usr/local/bin/leavemsg
USER 10001:10001
ENV LEAVEMSG_LISTEN=0.0.0.0:8080
EXPOSE 8080
# GET /readyz on LEAVEMSG_LISTEN (0.0.0.0 is asked on 127.0.0.1); exit 0 only on 200. It opens
# no database and needs no curl. Unhealthy while PostgreSQL is unreachable.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["leavemsg", "probe", "--timeout-secs", "3"]
ENTRYPOINT ["leavemsg"]
CMD ["serve"]
