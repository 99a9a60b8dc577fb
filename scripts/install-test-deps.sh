#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need: h2load
# (nghttp2-client) for independent HTTP/2 load, librdkafka's mock Kafka cluster
# (librdkafka-dev + gcc) for Kafka tests, Chromium for the dashboard test,
# Redis for the BullMQ peer benchmark, protoc with the well-known types for
# code generation (and its up-to-date check), and Python grpcio for the
# interoperability test (a client of the v1 contract from another language).
# Idempotent: does nothing when everything is already present.
set -euo pipefail
need=()
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
[ -f /usr/include/librdkafka/rdkafka_mock.h ] || need+=(librdkafka-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
/usr/bin/python3 -c 'import grpc, google.protobuf, msgpack' >/dev/null 2>&1 || need+=(python3-grpcio python3-protobuf python3-msgpack)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
