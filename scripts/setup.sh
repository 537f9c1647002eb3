#!/usr/bin/env bash
# scripts/setup.sh - set up this machine for failfast's test suite, from nothing.
#
# Target: Debian 12 (bookworm) as root (or with sudo), with or without systemd, and with no
# image registry reachable: only the package registries are reachable (possibly through TLS
# signed by a local CA whose certificate is in /usr/local/share/ca-certificates/). So the
# Docker engine is started by hand and the base images the tests and learners' Dockerfiles
# use are built here from Debian packages (debootstrap), never pulled.
#
# Idempotent: every step checks before it acts; a second run takes a few seconds.
#
#   bash scripts/setup.sh            # = all
#   bash scripts/setup.sh all        # packages js engine images isolate
#   bash scripts/setup.sh packages   # apt: redis-server nginx-light docker.io debootstrap iptables chromium postgresql
#   bash scripts/setup.sh js         # npm ci in tests/js: @actions/core, for tests/test_github_commands.py
#   bash scripts/setup.sh engine     # dockerd in the background, without systemd
#   bash scripts/setup.sh images     # local base images (debootstrap + docker import/build)
#   bash scripts/setup.sh isolate    # iptables: containers cannot open connections to the host
#
# Knobs (environment):
#   FF_WORK        scratch dir for the rootfs and build contexts (default /var/tmp/failfast-setup)
#   FF_MIRROR      Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   DOCKERD_LOG    dockerd's log (default /var/log/failfast-dockerd.log as root, else $TMPDIR)
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ -z "$SUDO" ]; then LOG_DIR=/var/log; else LOG_DIR=${TMPDIR:-/tmp}; fi
FF_WORK=${FF_WORK:-/var/tmp/failfast-setup}
FF_MIRROR=${FF_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=${DOCKERD_LOG:-$LOG_DIR/failfast-dockerd.log}
DOCKERD_PIDFILE=/var/run/docker.pid          # dockerd's default --pidfile
BASE_LABEL=dev.failfast.local-base           # marks the images built here
JS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/js"   # the tests' npm project

# Debian packages the suite needs: Redis for milestone 5, nginx for the local backend's edge
# (m2.edge-answers-first runs the learner's nginx.conf; nginx-light is the smallest build with
# the proxy module), a Docker engine (docker.io pulls in containerd and runc), debootstrap for
# the base images, iptables for `isolate`, and chromium, the headless browser that opens the
# HTML report in tests/e2e/test_html_browser.py (/usr/bin/chromium), and postgresql, whose
# server binaries (/usr/lib/postgresql/*/bin: initdb, pg_ctl) the grading history's tests start
# a throwaway cluster of their own with (tests/postgres.py); the cluster Debian's package makes
# and starts, if any, is never used.
REQUIRED_PACKAGES=(redis-server nginx-light docker.io debootstrap iptables chromium postgresql)
# Optional packages: installed when apt has a candidate for them, skipped otherwise.
OPTIONAL_PACKAGES=()

# ---------------------------------------------------------------- helpers ---
log() { printf '[setup] %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
dk() { $SUDO docker "$@"; }
have_image() { dk image inspect "$1" >/dev/null 2>&1; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}
# Runs a quiet command with its output in a log file; on failure shows the log's tail.
quiet() {
  local logfile=$1; shift
  if ! "$@" >"$logfile" 2>&1; then
    log "failed: $* (tail of $logfile:)"; tail -20 "$logfile" >&2; exit 1
  fi
}
apt_install() {
  quiet "$LOG_DIR/failfast-apt.log" $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$@"
}

# --------------------------------------------------------------- packages ---
do_packages() {
  local missing=() optional=() pkg updated="" t
  for pkg in "${REQUIRED_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    t=$(now)
    quiet "$LOG_DIR/failfast-apt.log" $SUDO apt-get update -q
    updated=1
    log "apt-get update: $(since "$t")"
    t=$(now)
    # docker.io's postinst says "invoke-rc.d: policy-rc.d denied execution of start." when
    # there is no systemd: harmless, `engine` starts dockerd by hand.
    apt_install "${missing[@]}"
    log "apt-get install ${missing[*]}: $(since "$t")"
  fi
  for pkg in "${OPTIONAL_PACKAGES[@]}"; do
    installed "$pkg" && continue
    # No package lists at all yet (a fresh machine): update once before deciding.
    if ! has_candidate "$pkg" && [ -z "$updated" ] \
       && ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
      quiet "$LOG_DIR/failfast-apt.log" $SUDO apt-get update -q; updated=1
    fi
    if has_candidate "$pkg"; then optional+=("$pkg"); else log "$pkg: no apt candidate, skipped"; fi
  done
  if [ "${#optional[@]}" -gt 0 ]; then
    t=$(now)
    apt_install "${optional[@]}"
    log "apt-get install ${optional[*]}: $(since "$t")"
  fi
  [ "${#missing[@]}" -gt 0 ] || [ "${#optional[@]}" -gt 0 ] || log "packages already installed"
}

# --------------------------------------------------------------------- js ---
# What tests/test_github_commands.py compares failfast's workflow commands with: @actions/core,
# from tests/js/package-lock.json. Installed when node_modules is missing or older than the lock
# file; under CI that test fails rather than skips without it.
do_js() {
  local t
  if [ -d "$JS_DIR/node_modules" ] && [ ! "$JS_DIR/package-lock.json" -nt "$JS_DIR/node_modules" ]; then
    log "tests/js/node_modules up to date"; return
  fi
  command -v npm >/dev/null || { log "npm not found: install Node.js 20 or later with npm"; exit 1; }
  t=$(now)
  quiet "$LOG_DIR/failfast-npm.log" npm ci --prefix "$JS_DIR" --no-audit --no-fund
  touch "$JS_DIR/node_modules"                # newer than the lock file it was installed from
  log "npm ci in tests/js: $(since "$t")"
}

# ----------------------------------------------------------------- engine ---
do_engine() {
  if dk info >/dev/null 2>&1; then log "dockerd already answers"; return; fi
  command -v dockerd >/dev/null || { log "dockerd not installed: run 'setup.sh packages'"; exit 1; }
  # No systemd: start dockerd (it starts its own containerd) in its own session so that it
  # outlives this shell. No flags needed on this kind of machine (overlay2, iptables work).
  log "starting dockerd (log: $DOCKERD_LOG)"
  $SUDO setsid nohup "$(command -v dockerd)" --pidfile "$DOCKERD_PIDFILE" \
    >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local i
  for i in $(seq 1 120); do                 # up to 30 s; usually answers within a second
    if dk info >/dev/null 2>&1; then
      log "dockerd up after ~$((i / 4)) s, storage driver $(dk info -f '{{.Driver}}')"
      return
    fi
    sleep 0.25
  done
  log "dockerd did not answer within 30 s; tail of $DOCKERD_LOG:"; tail -20 "$DOCKERD_LOG" >&2
  exit 1
}

# ----------------------------------------------------------------- images ---
# Gives TAG the image REF is, unless TAG is an image that was not built here (say an official
# image pulled on a machine that can reach a registry): that one is left alone.
alias_tag() {
  local ref=$1 tag=$2 want have
  want=$(dk image inspect -f '{{.Id}}' "$ref")
  if have=$(dk image inspect -f '{{.Id}}' "$tag" 2>/dev/null); then
    [ "$have" = "$want" ] && return
    if [ -z "$(dk image inspect -f "{{index .Config.Labels \"$BASE_LABEL\"}}" "$tag")" ]; then
      log "$tag exists and was not built here: left as it is"; return
    fi
  fi
  dk tag "$ref" "$tag"
}

# Builds TAG from the Dockerfile on stdin, with CONTEXT as the build context.
build_image() {
  local tag=$1 ctx=$2 t
  cat >"$ctx/Dockerfile"
  t=$(now)
  # The legacy builder (what the docker SDK uses too); buildx is not installed.
  quiet "$FF_WORK/build-${tag//[\/:]/_}.log" $SUDO env DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx"
  log "built $tag: $(since "$t")"
}

fresh_dir() { $SUDO rm -rf "$1"; mkdir -p "$1"; }

do_images() {
  dk info >/dev/null 2>&1 || { log "no Docker engine answers: run 'setup.sh engine'"; exit 1; }
  mkdir -p "$FF_WORK"
  local t ctx

  # 1) A Debian base without any registry: debootstrap minbase (~80 s), then docker import.
  if ! have_image failfast/bookworm:minbase; then
    local rootfs="$FF_WORK/rootfs"
    $SUDO rm -rf "$rootfs"
    t=$(now)
    quiet "$FF_WORK/debootstrap.log" $SUDO debootstrap --variant=minbase bookworm "$rootfs" "$FF_MIRROR"
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "debootstrap minbase bookworm: $(since "$t")"
    t=$(now)
    $SUDO tar -C "$rootfs" -c . | dk import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' \
      -c "LABEL $BASE_LABEL=true" - failfast/bookworm:minbase >/dev/null
    $SUDO rm -rf "$rootfs"
    log "imported failfast/bookworm:minbase: $(since "$t")"
  fi

  # 2) Python base (Debian's python3 3.11), also tagged with the official names learners'
  #    Dockerfiles use, so `FROM python:3.11-slim` builds with pull=False. The 3.12 tag is a
  #    stand-in (bookworm has no 3.12). pip inside builds needs the machine's extra CAs; the
  #    host's other pip settings point at host paths and are deliberately not passed in.
  if ! have_image failfast/python:3.11-bookworm; then
    ctx="$FF_WORK/python"; fresh_dir "$ctx"; mkdir -p "$ctx/certs"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/certs/" 2>/dev/null || true
    build_image failfast/python:3.11-bookworm "$ctx" <<EOF
FROM failfast/bookworm:minbase
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates curl \\
 && update-ca-certificates \\
 && python3 -m venv /opt/venv \\
 && ln -s /opt/venv/bin/python /usr/local/bin/python \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
# A venv first on PATH: \`pip install\` works as in the official image (no PEP 668 error).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_DEFAULT_TIMEOUT=180 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONUNBUFFERED=1
LABEL $BASE_LABEL=true
CMD ["python3"]
EOF
  fi
  alias_tag failfast/python:3.11-bookworm python:3.11-slim
  alias_tag failfast/python:3.11-bookworm python:3.12-slim

  # 3) Redis from Debian (7.0), as user redis, no persistence; also tagged redis:7-alpine,
  #    the name prod-sim.yml uses (it is Debian inside).
  if ! have_image failfast/redis:7; then
    ctx="$FF_WORK/redis"; fresh_dir "$ctx"
    build_image failfast/redis:7 "$ctx" <<EOF
FROM failfast/bookworm:minbase
RUN apt-get update \\
 && apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
LABEL $BASE_LABEL=true
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--port", "6379", "--save", "", "--appendonly", "no", "--dir", "/tmp"]
EOF
  fi
  alias_tag failfast/redis:7 redis:7-alpine

  # 4) nginx from Debian (1.22, nginx-light), logs to stdout/stderr. Deliberately NOT tagged
  #    with an official nginx name: a learner nginx.conf with `user nginx;` would not start.
  if ! have_image failfast/nginx:bookworm; then
    ctx="$FF_WORK/nginx"; fresh_dir "$ctx"
    build_image failfast/nginx:bookworm "$ctx" <<EOF
FROM failfast/bookworm:minbase
RUN apt-get update \\
 && apt-get install -y --no-install-recommends nginx-light \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \\
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
LABEL $BASE_LABEL=true
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
EOF
  fi
  log "images: $(dk images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(failfast/|python:|redis:)' | sort | tr '\n' ' ')"
}

# ---------------------------------------------------------------- isolate ---
# Containers on an --internal network cannot reach the internet, but they can reach host
# services listening on 0.0.0.0 through the bridge's gateway; so can build steps on docker0.
# failfast names its networks' bridges ffbr-<run>. These rules drop new connections from those
# interfaces to the host; replies (host -> container), published ports and `RUN pip install`
# in builds (which go through FORWARD, not INPUT) still work.
do_isolate() {
  if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    log "isolate skipped: not root (and no password-less sudo)"; return
  fi
  if ! command -v iptables >/dev/null; then log "isolate skipped: iptables is not installed"; return; fi
  local ifc
  for ifc in ffbr+ docker0; do
    $SUDO iptables -C INPUT -i "$ifc" -j DROP 2>/dev/null \
      || $SUDO iptables -I INPUT 1 -i "$ifc" -j DROP
    $SUDO iptables -C INPUT -i "$ifc" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null \
      || $SUDO iptables -I INPUT 1 -i "$ifc" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  done
  log "iptables INPUT rules for ffbr+ and docker0 in place"
}

# -------------------------------------------------------------------- main ---
run_step() {
  local t; t=$(now)
  "do_$1"
  log "step $1: $(since "$t")"
}

cmd=${1:-all}
case "$cmd" in
  packages|js|engine|images|isolate) run_step "$cmd" ;;
  all)
    t0=$(now)
    for step in packages js engine images isolate; do run_step "$step"; done
    log "all done: $(since "$t0")"
    ;;
  *) echo "usage: $0 [all|packages|js|engine|images|isolate]" >&2; exit 2 ;;
esac
