#!/usr/bin/env bash
# Creates (once) the cached virtual environment with the real torch, safetensors and transformers the
# interop suite uses. It lives outside the repository; a stamp of requirements.txt decides reuse.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${CKPTD_VENV:-$HOME/.cache/ckptd/venv}
req="$here/Tests/interop/requirements.txt"
stamp="$venv/.ckptd-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: creating Python environment in $venv (torch is about 5 GiB; a few minutes the first time)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
DS_BUILD_OPS=0 "$venv/bin/pip" install -q -r "$req"
echo "$want" > "$stamp"
