#!/usr/bin/env bash
# GPU checks (issue 15): the CUDA tests, the 512 -> 1024 px vessel pipeline, and bf16-vs-fp32 training and
# sampling throughput with peak GPU memory, one line per check. Details: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                       # defaults: 20 s per run, 64 and 256 px, under 8 minutes
#   bash benchmarks/gpu_check.sh --seconds 60 --budget-minutes 20 --sizes 64,256,512
#
# Uses the checkout's .venv if there is one, else $PYTHON, else python3; the checkout's src/ comes first on
# the path, so it also runs where medisynth is not installed (its dependencies must be). Without CUDA it
# prints that CUDA is absent and exits 0.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python="$(command -v python3)"; fi
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
# a hard stop at 8 minutes, whatever happens (the script plans for --budget-minutes, 7.5 by default)
exec timeout --signal=TERM --kill-after=10 480 "$python" "$here/gpu_check.py" "$@"
