#!/usr/bin/env bash
# Builds static kvd and kvctl on the host and the image kvd:dev FROM scratch;
# and kvd-consul:dev FROM scratch from the Consul that scripts/install-consul
# builds (for compose.consul.yaml).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p bin
echo "building static binaries (CGO_ENABLED=0)..." >&2
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/kvd ../cmd/kvd
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/kvctl ../cmd/kvctl
echo "building image kvd:dev..." >&2
docker build -q -t kvd:dev -f Dockerfile . >/dev/null
echo "kvd:dev built ($(docker image inspect kvd:dev --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}'))" >&2
consul_bin=$(bash ../scripts/install-consul)
cp "$consul_bin/consul" bin/consul
echo "building image kvd-consul:dev..." >&2
docker build -q -t kvd-consul:dev -f Dockerfile.consul bin >/dev/null
