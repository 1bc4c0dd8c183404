#!/usr/bin/env bash
# What issue 17 still asks of a GPU, prepared as a few device calls that fit its 15 minutes.
#
#   bash bench/cuda_checks.sh fetch     # here (PyPI reachable): the wheels the GPU image lacks, into .whl/
#   bash bench/cuda_checks.sh tests     # there: the CUDA-only tests (tests/nets/test_fast.py, samplers/test_cuda.py)
#   bash bench/cuda_checks.sh sample    # there: bench/sample_speed.py on CUDA, its table written into docs/speed.md
#   bash bench/cuda_checks.sh train     # there: the main job with the CUDA defaults (compile auto), then FID@1000
#
# On the GPU machine (the device tool's run, carry [".whl"]), each part writes its log, and `sample` the page
# it updated, under $OUT. The image there holds CUDA torch, numpy, scikit-learn, safetensors, matplotlib and
# tqdm, but not tyro or diffusers: `fetch` downloads those (pure Python wheels).
# Each part stays well inside one call's 10 minutes: `tests` about 3, `sample` about 6 (four compiles of
# 25-30 s and the timed rounds), `train` about 4.
set -euo pipefail
cd "$(dirname "$0")/.."

part=${1:-}
out=${OUT:-/tmp/cuda-checks}

if [[ $part == fetch ]]; then
    # The versions the test suite ran with here (the image there has huggingface_hub and safetensors that
    # diffusers accepts; zipp, which importlib_metadata needs, is there too).
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl tyro==1.0.17 docstring_parser==0.18.0 typeguard==4.6.1 \
        diffusers==0.42.1 importlib_metadata==10.2.0
    ls .whl
    exit 0
fi

case $part in tests | sample | train) ;; *)
    echo "usage: bash bench/cuda_checks.sh fetch | tests | sample | train" >&2
    exit 2 ;;
esac

mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "|",
    torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")' | tee "$out/host.txt"

case $part in
tests)
    python3 -m pytest -p no:randomly -q -rs tests/nets/test_fast.py tests/samplers/test_cuda.py 2>&1 | tee "$out/tests.log"
    ;;
sample)
    python3 bench/sample_speed.py --device cuda --batch 16 256 --repeats 5 --doc docs/speed.md 2>&1 | tee "$out/sample_speed.log"
    cp docs/speed.md "$out/speed.md"
    ;;
train)
    run=/tmp/cuda-main-job
    rm -rf "$run"
    # The main job as `make demo` trains it, on CUDA with every default (bf16, channels_last, compile auto).
    timeout 200 python3 -m gaussdiff train --data digits --device cuda --run-dir "$run" 2>&1 | tee "$out/train.log" || true
    python3 -m gaussdiff eval "$run" --fid --n 1000 --steps 50 --device cuda 2>&1 | tee "$out/eval.log"
    cp "$run/samples.png" "$run/loss.png" "$out/" 2>/dev/null || true
    ;;
esac
