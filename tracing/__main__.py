"""python -m known_speech.tracing: `known-speech trace-prompt`, one text prompt traced (same options, same errors)."""

import sys

from known_speech.cli import main

if __name__ == "__main__":
    sys.exit(main(["trace-prompt", *sys.argv[1:]]))
