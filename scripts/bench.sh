#!/usr/bin/env bash
# `make bench`: conversion speed, memory and page cache against cp, the Python converters and an anchor build of
# an older commit (ANCHOR_REF, built once into bench-data/anchor-REF), what a conversion does to a reader beside
# it, two conversions at once, 20 GiB when the disk has room; then the daemon figures.
# BENCH_PARTS picks parts (default "speed yield concurrent big daemon dist"): speed, yield, concurrent and big are
# scripts/bench/bench.py's, daemon is scripts/bench/daemon_bench.py (its own parts: BENCH_DAEMON_PARTS), dist is
# scripts/bench/dist_bench.py. Each replaces only its own part of BENCHMARKS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${CKPTD_VENV:-$HOME/.cache/ckptd/venv}
export CKPTD=${CKPTD:-$here/.build/release/ckptd}
export BENCH_DIR=${BENCH_DIR:-$here/bench-data}
export BENCH_PARTS=${BENCH_PARTS:-speed yield concurrent big daemon dist}
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing (apt-get install time)"; exit 1; }
command -v fincore >/dev/null || { echo "bench: fincore missing (util-linux)"; exit 1; }
mkdir -p "$BENCH_DIR"
has_part() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
# The anchor is only compared with in the speed part.
if has_part speed && [ -n "${ANCHOR_REF:-}" ] && [ -z "${ANCHOR:-}" ]; then
  anchor_dir="$BENCH_DIR/anchor-$ANCHOR_REF"
  if [ ! -x "$anchor_dir/.build/release/ckptd" ]; then
    echo "bench: building the anchor $ANCHOR_REF in $anchor_dir"
    mkdir -p "$anchor_dir"
    git -C "$here" archive "$ANCHOR_REF" | tar -x -C "$anchor_dir"
    (cd "$anchor_dir" && swift build -c release)
  fi
  export ANCHOR="$anchor_dir/.build/release/ckptd"
  export ANCHOR_COMMIT="$(git -C "$here" rev-parse --short "$ANCHOR_REF")"
fi
if has_part speed || has_part yield || has_part concurrent || has_part big; then
  "$venv/bin/python" "$here/scripts/bench/bench.py"
fi
if has_part daemon; then
  "$venv/bin/python" "$here/scripts/bench/daemon_bench.py"
fi
# Distributed checkpoints (issue 12): replaces its own section of BENCHMARKS.md.
if has_part dist; then
  "$venv/bin/python" "$here/scripts/bench/dist_bench.py"
fi
