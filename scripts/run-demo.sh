#!/usr/bin/env bash
# `make run`: starts ckptd in the foreground on the repository's default config.
set -euo pipefail
bin=$1
config=$2
exec "$bin" run --config "$config"
