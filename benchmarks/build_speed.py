"""Items per second of each build stage, one process, on the first N Known records.

    python benchmarks/build_speed.py --limit 50
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict

from known_speech.audio import encode_flac, to_mono_16k
from known_speech.builders.align.tts import words_from_synthesis
from known_speech.builders.item import ItemBuilder, speech_token_spans
from known_speech.builders.options import BuildOptions
from known_speech.source import load_known
from known_speech.spans import time_span_of_chars
from known_speech.spoken import verbalise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    builder = ItemBuilder(BuildOptions())
    print(f"{platform.processor() or platform.machine()}, 1 process; models loaded in {time.perf_counter() - started:.1f} s")
    seconds: dict[str, float] = defaultdict(float)
    audio_seconds = 0.0
    records = load_known()[: args.limit]
    for record in records:
        tick = time.perf_counter()
        spoken = verbalise(record.prompt)
        seconds["verbalise"] += time.perf_counter() - tick
        tick = time.perf_counter()
        synthesis = builder.engine.synthesize(spoken)
        seconds["synthesis (Piper + phoneme-word matching)"] += time.perf_counter() - tick
        tick = time.perf_counter()
        samples = to_mono_16k(synthesis.samples, synthesis.sample_rate)
        encode_flac(samples)
        seconds["resample to 16 kHz + FLAC"] += time.perf_counter() - tick
        audio_seconds += samples.size / 16_000
        tick = time.perf_counter()
        words = words_from_synthesis(spoken, synthesis)
        speech_token_spans(time_span_of_chars(words, *record.subject_char_span))
        seconds["TTS alignment + token spans"] += time.perf_counter() - tick
        tick = time.perf_counter()
        builder.asr.check(samples, spoken.text, spoken.spoken_text_in(*record.subject_char_span))
        seconds["ASR check (Whisper tiny.en, beam 5)"] += time.perf_counter() - tick
    total = sum(seconds.values())
    for stage, spent in seconds.items():
        print(f"{stage:45s} {len(records) / spent:9.1f} items/s  ({100 * spent / total:4.1f} % of item time)")
    print(f"{'all stages':45s} {len(records) / total:9.1f} items/s; {audio_seconds / total:.1f} s of audio per second")


if __name__ == "__main__":
    main()
