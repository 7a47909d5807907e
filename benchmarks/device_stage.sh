#!/usr/bin/env bash
# Stages the package for a GPU host that has PyTorch and transformers but no registry: .device/site holds
# known_speech with its subpackages in place (builders, tracing, evaluation, cards live beside it here).
# Run it here, then on the host: export PYTHONPATH=$PWD/.device/site:$PWD  (and carry ".device")
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device/site && mkdir -p .device/site
cp -r known_speech .device/site/known_speech
for part in builders tracing evaluation cards; do cp -r "$part" ".device/site/known_speech/$part"; done
# Liger Kernel (pure Python + Triton; the host has Triton) for `--kernels liger`, at the version constraints.txt pins
liger=$(grep -io '^liger-kernel==[0-9.]*' constraints.txt)
.venv/bin/pip download -q --no-deps "$liger" -d .device/wheels
.venv/bin/python -m zipfile -e .device/wheels/liger_kernel-"${liger#*==}"-py3-none-any.whl .device/site
find .device/site -name __pycache__ -prune -exec rm -rf {} +
du -sh .device/site
