#!/usr/bin/env bash
# Provision everything the demo and the tests need on a bare Debian 12 machine, idempotently:
#   Docker engine 26 + buildx, a loopback registry, a loopback SeaweedFS S3 server,
#   a Python base image built without any registry, and the Python dev environment (.venv).
# Each step is skipped when what it provides already answers. Logs and data live in $MLOPS_STATE_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${MLOPS_STATE_DIR:-/var/tmp/mlops-components}
REGISTRY=${MLOPS_REGISTRY:-127.0.0.1:5000}
S3_PORT=${MLOPS_S3_PORT:-8333}
BASE_IMAGE=${MLOPS_BASE_IMAGE:-$REGISTRY/mlops-components/python-base:3.11-bookworm}
VENV=${MLOPS_VENV:-$ROOT/.venv}
mkdir -p "$STATE"

log() { printf '[provision] %s\n' "$*" >&2; }

wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
  local what=$1 limit=$2; shift 2
  for ((i = 0; i < limit; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "$what did not come up within ${limit}s"; return 1
}

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_is_modern() {
  local v; v=$(docker version --format '{{.Server.Version}}' 2>/dev/null) || return 1
  [ "${v%%.*}" -ge 23 ]
}

provision_engine() {
  if engine_is_modern && docker buildx version >/dev/null 2>&1; then return; fi
  command -v docker >/dev/null || apt_install docker.io
  # Bookworm's docker.io brings containerd, runc and iptables; its BuildKit is too old for bake's
  # named contexts, so the daemon and buildx come from trixie's packages, extracted, not installed.
  command -v containerd >/dev/null && command -v debootstrap >/dev/null && command -v docker-registry >/dev/null \
    || apt_install docker.io docker-registry debootstrap ca-certificates
  if [ ! -x /opt/docker26/usr/sbin/dockerd ] || [ ! -x ~/.docker/cli-plugins/docker-buildx ]; then
    log "fetching dockerd 26 and buildx from Debian trixie"
    local tmp; tmp=$(mktemp -d)
    echo "deb http://deb.debian.org/debian trixie main" >"$tmp/trixie.list"
    mkdir -p "$tmp/lists/partial"
    local A=(-o Dir::Etc::SourceList="$tmp/trixie.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$tmp/lists")
    apt-get "${A[@]}" update -qq
    (cd "$tmp" && apt-get "${A[@]}" download docker.io docker-buildx >/dev/null)
    dpkg -x "$tmp"/docker.io_*.deb /opt/docker26  # 26.1 when written; any engine >= 23 works
    dpkg -x "$tmp"/docker-buildx_*.deb "$tmp/bx"
    mkdir -p ~/.docker/cli-plugins
    cp "$tmp/bx/usr/libexec/docker/cli-plugins/docker-buildx" ~/.docker/cli-plugins/
    rm -rf "$tmp"
  fi
  if ! engine_is_modern; then
    if docker version >/dev/null 2>&1; then log "an older Docker engine answers; stop it first"; exit 1; fi
    log "starting dockerd 26 (log: $STATE/dockerd.log)"
    PATH=/opt/docker26/usr/sbin:/opt/docker26/usr/bin:$PATH setsid /opt/docker26/usr/sbin/dockerd \
      >"$STATE/dockerd.log" 2>&1 </dev/null &
    wait_for "dockerd" 60 docker info
  fi
}

provision_registry() {
  if curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then return; fi
  command -v docker-registry >/dev/null || apt_install docker-registry
  cat >"$STATE/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $STATE/registry}, delete: {enabled: true}}
http: {addr: $REGISTRY}
YAML
  log "starting the registry on $REGISTRY"
  setsid docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 </dev/null &
  wait_for "registry" 30 curl -fsS "http://$REGISTRY/v2/"
}

provision_venv() {
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
  local stamp="$VENV/.installed" want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/components/mlops_runtime/requirements.lock" | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing the Python environment into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q --require-hashes -r "$ROOT/components/mlops_runtime/requirements.lock"
    "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    echo "$want" >"$stamp"
  fi
}

s3_round_trip() {  # the gateway answers HTTP before it can store anything: wait for a real write
  AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID=probe AWS_SECRET_ACCESS_KEY=probe \
  AWS_DEFAULT_REGION=us-east-1 "$VENV/bin/python" - <<'PY'
import boto3
from botocore.config import Config
s3 = boto3.client("s3", config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10))
try:  # SeaweedFS lists only the caller's own buckets, so create and accept "already there"
    s3.create_bucket(Bucket="mlops-provision")
except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
    pass
s3.put_object(Bucket="mlops-provision", Key="ready", Body=b"ok")
PY
}

provision_s3() {
  if s3_round_trip >/dev/null 2>&1; then return; fi
  log "starting SeaweedFS S3 on 127.0.0.1:$S3_PORT"
  mkdir -p "$STATE/s3data"
  # weed would make AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from its environment its only identity and
  # refuse every other key: start it without them, so any key is accepted (a local test server).
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN setsid "$VENV/bin/weed" server -dir="$STATE/s3data" -s3 -s3.port="$S3_PORT" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=9333 -volume.port=8081 -filer.port=8888 -volume.max=100 \
    >"$STATE/seaweedfs.log" 2>&1 </dev/null &
  wait_for "SeaweedFS S3" 120 s3_round_trip
}

# Bump when the base image recipe below changes: provisioning rebuilds a base whose label differs.
BASE_RECIPE=4

provision_base_image() {
  # A Python 3.11 base image made from Debian packages (no registry is reachable to pull python:3.11-slim),
  # with the host's CA bundle so installers inside image builds pass this network's TLS proxy.
  # CI's test job and the release workflow both build it here, so releases ship the tested base.
  local recipe
  recipe=$(docker image inspect --format '{{ index .Config.Labels "io.mlops-components.base-recipe" }}' \
    "$BASE_IMAGE" 2>/dev/null || true)
  if [ "$recipe" = "$BASE_RECIPE" ]; then
    docker push -q "$BASE_IMAGE" >/dev/null
    return
  fi
  local rootfs_image=local/debian-python:bookworm-r$BASE_RECIPE
  if ! docker image inspect "$rootfs_image" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    log "debootstrapping a minimal bookworm with python3 (about a minute)"
    rm -rf "$STATE/rootfs"
    # No python3-pip (25 MB with setuptools and wheel): builds make venvs (python3-venv brings the wheels).
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$STATE/rootfs" http://deb.debian.org/debian >"$STATE/debootstrap.log" 2>&1
    # What an image never needs: apt's package lists and caches (about 96 MB), logs, documentation,
    # manual pages and message catalogues; dpkg is told to leave the last three out of later installs.
    local r="$STATE/rootfs"
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old "$r"/var/log/* \
      "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* "$r"/tmp/*
    # glibc's iconv converters (8 MB; Python's codecs are its own, UTF-8 is built into glibc) and the parts of
    # the standard library no program here runs: its test package and C test modules, lib2to3, pydoc's topics.
    rm -rf "$r"/usr/lib/x86_64-linux-gnu/gconv "$r"/usr/lib/python3.11/test "$r"/usr/lib/python3.11/lib2to3 \
      "$r"/usr/lib/python3.11/pydoc_data "$r"/usr/lib/python3.11/lib-dynload/_test*.so \
      "$r"/usr/lib/python3.11/lib-dynload/_ctypes_test.*.so "$r"/usr/lib/python3.11/lib-dynload/_xxtestfuzz.*.so
    cat >"$r/etc/dpkg/dpkg.cfg.d/excludes" <<'DPKG'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
DPKG
    tar -C "$r" -c . | docker import - "$rootfs_image" >/dev/null
    rm -rf "$r"
  fi
  local ctx; ctx=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $rootfs_image
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8
RUN ln -sf /usr/bin/python3 /usr/local/bin/python
LABEL io.mlops-components.base-recipe=$BASE_RECIPE
CMD ["python3"]
DOCKERFILE
  log "building $BASE_IMAGE"
  docker build -q -t "$BASE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  docker push -q "$BASE_IMAGE" >/dev/null
}

main() {
  local what=${1:-all}
  case "$what" in
    all) provision_engine; provision_registry; provision_venv; provision_s3; provision_base_image ;;
    engine) provision_engine ;;
    registry) provision_registry ;;
    venv) provision_venv ;;
    s3) provision_s3 ;;
    base-image) provision_base_image ;;
    *) echo "usage: $0 [all|engine|registry|venv|s3|base-image]" >&2; exit 2 ;;
  esac
}
main "$@"
