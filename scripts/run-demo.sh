#!/usr/bin/env bash
# `make run`: starts ckptd in the foreground on the repository's default config.
set -euo pipefail
bin=$1
config=$2
# The example drop-in (config/watch.d/10-example.toml) watches this folder.
mkdir -p /tmp/ckptd-demo/run
echo "ckptd: watching /tmp/ckptd-demo/run (drop a checkpoint-N/ folder with model.safetensors and"
echo "ckptd: trainer_state.json there); 'ckptd status --config $config' in another terminal shows progress"
exec "$bin" run --config "$config"
