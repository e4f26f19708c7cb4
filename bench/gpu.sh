#!/usr/bin/env bash
# Every GPU check of elfdd in one call of a lent device machine (/work/.library/device; 15 minutes a session).
#
#   bash bench/gpu.sh prepare   # here, once: wheels the device lacks into .whl/, the Debian data into .gpudata/
#   bash bench/gpu.sh check     # here: the same checks on this CPU at toy size (the plumbing, not the GPU)
#   bash bench/gpu.sh           # there: run(command="bash bench/gpu.sh", carry=[".whl", ".gpudata"], timeout_s=560)
#
# The device image has torch, numpy, pandas, xarray, rich, pyyaml, matplotlib and fsspec, but not pydantic, zarr,
# numcodecs or dask (KINDS.md); nothing can be fetched there, so `prepare` downloads those (the versions of
# requirements/lock.txt) for its Python 3.12. elfdd runs from src/ through its Python API (no Prefect there).
# What bench/gpu.py measures and where its files go: its docstring.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="pydantic pydantic_core annotated-types typing-inspection zarr numcodecs donfig google-crc32c dask partd locket"

case "${1:-run}" in
prepare)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo '/.gpudata/' >>.git/info/exclude
    pins=()
    for name in $WHEELS; do pins+=("$(grep -i "^${name}==" requirements/lock.txt)"); done
    rm -rf .whl && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
    mkdir -p .gpudata && cp /usr/share/datasets/fashion-mnist/*.gz .gpudata/
    du -sh .whl .gpudata
    ;;
check)
    ELFDD_DATA=/usr/share/datasets/fashion-mnist .venv/bin/python bench/gpu.py --out "${OUT:-/tmp/elfdd-gpu-check}" \
        --device cpu --quick
    ;;
run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:src ELFDD_DATA=.gpudata PYTHONUNBUFFERED=1 python3 bench/gpu.py --out "$OUT" --device cuda
    ;;
*)
    echo "usage: bash bench/gpu.sh [prepare|check|run]" >&2
    exit 2
    ;;
esac
