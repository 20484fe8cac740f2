#!/usr/bin/env bash
# Downloads into gpu_wheels/ (git-ignored) the wheels that scripts/gpu_check.sh installs on the GPU machine.
#
# That machine has torch, transformers, accelerate, torch_geometric, pyarrow, pandas, fsspec, xxhash and
# huggingface_hub, but no `datasets`, `rdkit`, `dill` or `multiprocess`, and it cannot reach a package index: the
# wheels travel with the working tree (the device tool's `carry`, 64 MiB in all with the tree). Its python3 is
# CPython 3.12 on x86-64 Linux, so the wheels are fetched for that (override with GPU_PYTHON_VERSION). Run it in the
# checkout whose tree the device tool sends (a session's own checkout), then carry `gpu_wheels`; see docs/gpu.md.
#
# pyarrow is not fetched: its wheel alone is 55 MB, which with rdkit's 32 MB would not fit in 64 MiB. datasets 5.2
# declares pyarrow>=24; gpu_check.sh prints the machine's version (datasets 5.2 also ran here on pyarrow 23.0.1).
#
#   bash scripts/fetch_gpu_wheels.sh            # about 33 MB: datasets, dill, multiprocess, xxhash, rdkit
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${GPU_WHEELS:-gpu_wheels}"
PYTHON_VERSION="${GPU_PYTHON_VERSION:-3.12}"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi
# The versions class-hf is tested with here (datasets' own needs: dill<0.4.2, multiprocess<0.70.20, xxhash).
WHEELS=(datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 rdkit==2026.9.1)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # one version of each: two versions of a package stop the whole install there
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYTHON_VERSION" --implementation cp "${platforms[@]}" -d "$DEST" "${WHEELS[@]}"

ls -l "$DEST"
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
echo "wheels: $((total / 1048576)) MiB; tracked tree: $((tree / 1048576)) MiB; the device tool carries at most 64 MiB"
if [ $((total + tree)) -gt $((60 * 1048576)) ]; then
  echo "warning: wheels and tree come close to (or over) the 64 MiB the device tool carries" >&2
fi
