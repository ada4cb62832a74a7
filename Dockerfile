# zarr-roller: every binary in one image (the stages, roller-serve and the roller CLI).
#   docker build -t zarr-roller .
# Build stage: the workspace in release mode against Debian's NetCDF and HDF5.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnetcdf-dev libhdf5-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# One multi-call binary: `roller` is every stage when called by the stage's name (the links
# below), so the image carries one copy of the libraries instead of eight (44 MB in all).
RUN cargo build --release --locked -p roller-cli --bin roller \
    && mkdir -p /out \
    && cp target/release/roller /out/ \
    && for stage in roller-bridge roller-fetch roller-decode roller-write roller-commit roller-scheduler roller-serve; do \
           ln -s roller "/out/$stage"; \
       done

# Runtime stage: the NetCDF and HDF5 runtime libraries, CA certificates for S3 over TLS, curl
# for the health check, and a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnetcdf19 libhdf5-103-1 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin roller \
    && mkdir -p /data/sources && chown -R roller:roller /data
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /data
# Stages serve /healthz, /readyz and /metrics here (roller-serve answers on its own port).
ENV ROLLER_HEALTH_LISTEN=0.0.0.0:9090
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9090/readyz || exit 1
CMD ["roller", "--help"]
