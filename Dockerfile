# Baton gateway image: a release build on Debian, one binary, data in a volume.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin baton

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/baton baton \
 && mkdir -p /var/lib/baton && chown baton /var/lib/baton
COPY --from=build /src/target/release/baton /usr/local/bin/baton
USER baton
ENV BATON_BIND=0.0.0.0:8080 \
    BATON_DATA_DIR=/var/lib/baton \
    BATON_LOG_FORMAT=json
VOLUME /var/lib/baton
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["baton"]
CMD ["serve"]
