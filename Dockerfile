# mdeploy-serve in a container (issue #19): built on Debian 12, run from a small runtime stage.
#
#   docker build -t mdeploy-serve .
#   docker run --rm -p 8500:8500 -v "$PWD/models:/models:ro" mdeploy-serve
#
# /models holds NAME/VERSION/model.mdl (TensorFlow Serving's layout); arguments after the image
# name are added to the server's (e.g. --canary 10).  The build uses BLAS=0: the runtime's own
# AVX2/AVX-512 kernels, no OpenBLAS to ship (OpenBLAS serves only CPUs without AVX2).
# Without access to Docker Hub, tools/scripts/debian-base-image.sh makes the base image from
# Debian's mirror (or --build-arg BASE=another Debian 12 image).

ARG BASE=debian:12-slim
FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libcjson-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev \
      libsodium-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" BLAS=0 all build/release-noblas/bin/mdeploy-serve \
 && strip build/release-noblas/bin/mdeploy-serve

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcjson1 libsodium23 libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/release-noblas/bin/mdeploy-serve /usr/local/bin/mdeploy-serve
USER nobody
EXPOSE 8500
ENTRYPOINT ["mdeploy-serve", "--model-dir", "/models", "--port", "8500"]
