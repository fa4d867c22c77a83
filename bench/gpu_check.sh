#!/usr/bin/env bash
# One run of dfpipe's CUDA figures (bench/gpu_check.py), capped at 8 minutes in all.
# Why a wrapper: whoever has the GPU runs one command from anywhere, with the project's
# venv, the shared weights and no network, and it cannot run over its time.
#   bash bench/gpu_check.sh [--dry-run] [--only NAME[,NAME]] [--work DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -x "$repo/.venv/bin/python" ]]; then
    py="$repo/.venv/bin/python"
else
    py="$(command -v python3)"
fi

export HF_HUB_OFFLINE=1
export DFPIPE_OFFLINE=1
if [[ -z "${DFPIPE_WEIGHTS_DIR:-}" && -d "$repo/../shared/weights" ]]; then
    shared="$(cd "$repo/../shared" && pwd)"
    export DFPIPE_WEIGHTS_DIR="$shared/weights:$shared/data/facemesh"
fi

# TERM at 470 s (the script prints its summary and exits), KILL at 480 s if a stuck CUDA
# call ignores it: 8 minutes at most, whatever happens
exec timeout -k 10 470 "$py" "$repo/bench/gpu_check.py" "$@"
