# Two stages: build with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Queries are checked against the committed .sqlx/ data: the build needs no database.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin leavemsg
COPY --from=build /src/target/release/leavemsg /usr/local/bin/leavemsg
USER leavemsg
ENV LEAVEMSG_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["leavemsg"]
CMD ["serve"]
