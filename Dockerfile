# syntax=docker/dockerfile:1
#
# scimbridge: a release build in a Rust image, run from a slim Debian image as an
# unprivileged user (uid 10001).
#
#   docker build -t scimbridge .
#   docker run --rm -p 8080:8080 \
#     -e DATABASE_URL=postgres://scimbridge:secret@db:5432/scimbridge \
#     -e SCIMBRIDGE_PUBLIC_URL=https://scim.example.com \
#     scimbridge
#
# `serve` applies the database migrations (compiled into the binary) before it listens.
# Other commands run the same binary:
#   docker run --rm -e DATABASE_URL=… scimbridge token create --role scim --name okta
#
# Settings are flags or environment variables (`scimbridge serve --help`): DATABASE_URL
# (required: this image is built without the embedded trial store, so it never keeps data
# inside the container), SCIMBRIDGE_PUBLIC_URL, SCIMBRIDGE_BODY_LIMIT, SCIMBRIDGE_REQUEST_TIMEOUT,
# SCIMBRIDGE_TOKEN_CACHE_SECONDS, SCIMBRIDGE_LEASE_SECONDS, SCIMBRIDGE_DB_MAX_CONNECTIONS,
# SCIMBRIDGE_PROFILES_DIR (mount a directory of app profiles; examples are in the image at
# /usr/share/scimbridge/profiles/examples),
# SCIMBRIDGE_LOG_JSON=true for JSON log lines.
#
# No HEALTHCHECK: the slim image has no curl or wget. Point the orchestrator's HTTP
# probes at GET /healthz (liveness) and GET /readyz (readiness; 503 while the database
# is unreachable). Neither needs a token.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
# No sqlx::query! macros are used; should one appear, fail the build instead of trying
# to reach a database from inside it.
ENV SQLX_OFFLINE=true

# `--no-default-features`: the production binary, Postgres only, without the embedded
# trial store's WASM engine (feature `embedded`).
# Dependencies first, against placeholder sources: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --no-default-features --bin scimbridge \
    && rm -rf src

# The real sources. migrations/ is needed at compile time: sqlx::migrate!("./migrations")
# embeds it into the binary.
COPY migrations ./migrations
# The built-in app profile is compiled in (include_str!).
COPY profiles ./profiles
COPY src ./src
# COPY keeps the files' own modification times, which can be older than the placeholder
# build above; touching the crate roots makes cargo rebuild the crate for sure.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --no-default-features --bin scimbridge \
    && install -m 0755 target/release/scimbridge /usr/local/bin/scimbridge

# ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 scimbridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin scimbridge

COPY --from=builder /usr/local/bin/scimbridge /usr/local/bin/scimbridge
COPY profiles/examples /usr/share/scimbridge/profiles/examples

# Listen on every interface of the container (the binary's default is 127.0.0.1:8080).
ENV SCIMBRIDGE_BIND=0.0.0.0:8080
EXPOSE 8080

USER 10001:10001

# SIGTERM (docker stop) makes the server finish in-flight requests, then exit.
ENTRYPOINT ["/usr/local/bin/scimbridge"]
CMD ["serve"]
