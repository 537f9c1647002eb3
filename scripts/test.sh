#!/usr/bin/env bash
# scripts/test.sh - the README's test command: set up the machine, then run the suite.
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# scripts/setup.sh installs what is missing with apt, starts a Docker engine without systemd
# and builds the local base images (once; seconds afterwards). Then, as a learner would: a
# fresh virtual environment, the package with its dev extra, and pytest with the arguments given.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh all
# shellcheck source=/dev/null
python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' && python -m pytest "$@"
