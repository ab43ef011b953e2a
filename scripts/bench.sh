#!/usr/bin/env bash
# `make bench`: conversion speed and memory against cp and the Python converters, then the daemon figures.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${CKPTD_VENV:-$HOME/.cache/ckptd/venv}
export CKPTD=${CKPTD:-$here/.build/release/ckptd}
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing (apt-get install time)"; exit 1; }
mkdir -p "${BENCH_DIR:-$here/bench-data}"
if [ -x "$here/scripts/bench/daemon_bench.py" ] || [ -f "$here/scripts/bench/daemon_bench.py" ]; then
  "$venv/bin/python" "$here/scripts/bench/daemon_bench.py"
fi
"$venv/bin/python" "$here/scripts/bench/bench.py"
# Distributed checkpoints (issue 12): replaces its own section of BENCHMARKS.md, so it runs after bench.py.
"$venv/bin/python" "$here/scripts/bench/dist_bench.py"
