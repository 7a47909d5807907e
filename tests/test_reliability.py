"""What an adversarial user tried, with the real components: a killed worker, changed inputs, a second
writer, silent audio, paths outside a manifest, malformed input, and the errors that name the fix."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile
from datasets import load_dataset

from known_speech.builders.asr import heard_other_speech
from known_speech.builders.build import build_dataset
from known_speech.builders.pool import WORKER_DIED
from known_speech.cli import main as cli_main
from known_speech.layout import DatasetFolder
from known_speech.source import KnownSourceError, load_known
from known_speech.spoken import verbalise

pytestmark = pytest.mark.slow


def _source(tmp_path, known_records, ids, change=None):
    by_id = {r.known_id: r.to_dict() for r in known_records}
    records = [dict(by_id[i], **(change or {}).get(i, {})) for i in ids]
    path = tmp_path / "source.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _espeak(path, text):
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)


def _holders(path) -> list[int]:
    """Processes that have `path` open (from /proc); an fd or a process that goes away while we look is skipped
    alone, so a busy reader is not missed for another fd's sake."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == str(path):
                    pids.append(int(entry))
                    break
            except OSError:
                continue
    return pids


def test_a_worker_killed_mid_item_fails_that_item_and_the_build_finishes(tmp_path, known_records):
    """Item 65's audio is a FIFO: its worker blocks reading it and is SIGKILLed, twice (in the pool, then
    alone); the build records 65 as failed for that reason, builds 0 and 21, and does not hang."""
    voice = tmp_path / "voice"
    voice.mkdir()
    by_id = {r.known_id: r for r in known_records}
    for known_id in (0, 21):
        _espeak(voice / f"{known_id}.wav", verbalise(by_id[known_id].prompt).text)
    fifo = voice / "65.wav"
    os.mkfifo(fifo)
    (voice / "manifest.json").write_text(json.dumps({"voice": "v", "files": {i: f"{i}.wav" for i in ("0", "21", "65")}}))
    result = {}
    build = threading.Thread(target=lambda: result.setdefault("r", build_dataset(
        tmp_path / "ds", engine="external", voice=str(voice), source=str(_source(tmp_path, known_records, (0, 21, 65))),
        workers=2)))
    build.start()
    kills, deadline = 0, time.monotonic() + 300
    while build.is_alive() and time.monotonic() < deadline:
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds once a worker is reading it
        except OSError:
            time.sleep(0.2)
            continue
        readers = []
        while not readers and build.is_alive() and time.monotonic() < deadline:
            # the reader's end shows in /proc a moment after ours opens; ours stays open until it does, so the
            # reader never sees an end of file
            readers = [pid for pid in _holders(fifo) if pid != os.getpid()]
            time.sleep(0.05)
        for pid in readers:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        while any(pid in readers for pid in _holders(fifo)) and time.monotonic() < deadline:
            time.sleep(0.05)  # the reader is gone before our end closes
        os.close(writer)
    build.join(timeout=60)
    assert not build.is_alive(), "the build hung"
    summary = result["r"].summary
    assert kills >= 2 and summary.failed == 1 and summary.items == 3
    assert summary.failures[0].known_id == 65 and summary.failures[0].reason == WORKER_DIED


def test_an_item_needing_more_memory_than_a_worker_may_use_fails_with_that_reason(tmp_path, known_records):
    """Item 21's audio decodes to 400 MB of samples; workers may use 0.5 GB of data memory in all."""
    voice = tmp_path / "voice"
    voice.mkdir()
    _espeak(voice / "0.wav", verbalise(next(r for r in known_records if r.known_id == 0).prompt).text)
    soundfile.write(voice / "21.flac", np.zeros(100_000_000, dtype=np.int16), 16_000, subtype="PCM_16")
    (voice / "manifest.json").write_text(json.dumps({"voice": "v", "files": {"0": "0.wav", "21": "21.flac"}}))
    result = build_dataset(tmp_path / "ds", engine="external", voice=str(voice), workers=2, item_memory_gb=0.5,
                           source=str(_source(tmp_path, known_records, (0, 21))))
    (failure,) = result.summary.failures
    assert failure.known_id == 21 and "MemoryError" in failure.reason and "--item-memory-gb 0.5" in failure.reason
    assert result.summary.items - result.summary.failed == 1


def test_changed_inputs_rebuild_exactly_the_affected_items(tmp_path, known_records):
    out, ids = tmp_path / "ds", (21, 65)
    first = build_dataset(out, source=str(_source(tmp_path, known_records, ids)), workers=1, aligners=("tts",))
    flac = {i: (out / ".build" / "piper-en_US-joe-medium" / "items" / f"{i}.flac").read_bytes() for i in ids}
    assert first.summary.built == 2
    again = build_dataset(out, source=str(_source(tmp_path, known_records, ids)), workers=1, aligners=("tts",))
    assert (again.summary.built, again.summary.reused, again.summary.rebuilt) == (0, 2, {})
    changed = _source(tmp_path, known_records, ids, {65: {"attribute": "Sony Music"}})
    third = build_dataset(out, source=str(changed), workers=1, aligners=("tts",))
    assert third.summary.rebuilt == {"record": 1} and third.summary.built == 1
    assert (out / ".build" / "piper-en_US-joe-medium" / "items" / "21.flac").read_bytes() == flac[21]
    fourth = build_dataset(out, source=str(changed), workers=1, aligners=("tts", "whisper"))
    assert fourth.summary.rebuilt == {"aligners": 2}
    stats = json.loads((out / "build_stats.json").read_text())["piper-en_US-joe-medium"]
    assert stats["rebuilt"] == {"aligners": 2} and stats["source"] == "source.json" and not stats["voice"].startswith("/")
    flac = (out / ".build" / "piper-en_US-joe-medium" / "items" / "21.flac").read_bytes()
    with pytest.raises(ValueError, match="piper-en_US-joe-medium holds 2 items; --limit 1 would drop 1: pass --prune, "
                                         "or --out for another folder"):
        build_dataset(out, source=str(changed), workers=1, aligners=("tts", "whisper"), limit=1)
    smaller = build_dataset(out, source=str(changed), workers=1, aligners=("tts", "whisper"), limit=1, prune=True)
    assert (smaller.summary.items, smaller.summary.built) == (1, 0)  # another --limit reuses, rewrites nothing
    assert (out / ".build" / "piper-en_US-joe-medium" / "items" / "21.flac").read_bytes() == flac


def test_a_build_where_every_item_fails_still_says_why(tmp_path, known_records, capsys):
    voice = tmp_path / "voice"
    voice.mkdir()
    (voice / "manifest.json").write_text(json.dumps({"voice": "v", "files": {}}))
    source = _source(tmp_path, known_records, (0, 21))
    assert cli_main(["build", "--engine", "external", "--voice", str(voice), "--source", str(source),
                     "--out", str(tmp_path / "ds"), "--workers", "1"]) == 1
    assert "no item of external-voice was built" in capsys.readouterr().err
    stats = json.loads((tmp_path / "ds" / "build_stats.json").read_text())["external-voice"]
    assert stats["failed"] == 2 and stats["num_examples"] == 0 and "not in" in stats["failures"][0]["reason"]


def test_a_second_writer_stops_with_a_message_naming_the_first(tmp_path):
    folder = tmp_path / "ds"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from known_speech.layout import DatasetFolder\n"
        f"with DatasetFolder({str(folder)!r}).writing('build piper-x'):\n"
        "    print('holding', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ValueError, match=r"being written by another known-speech process \(build piper-x, pid "):
            with DatasetFolder(folder).writing("filter"):
                pass
        done = subprocess.run([sys.executable, "-m", "known_speech.cli", "build", "--out", str(folder), "--limit", "1"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "build piper-x" in done.stderr and done.stderr.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
    with DatasetFolder(folder).writing("filter"):  # released with its process
        assert json.loads((folder / ".writer.json").read_text())["command"] == "filter"


def test_ctrl_c_prints_one_line_and_the_same_command_resumes(tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group, build workers included) once the first item
    is cached: one line, no traceback, exit 130; the same command then builds only what was left."""
    folder = tmp_path / "ds"
    argv = [sys.executable, "-m", "known_speech.cli", "build", "--engine", "espeak-ng", "--voice", "en-us",
            "--out", str(folder), "--limit", "10", "--workers", "2"]
    # a terminal's SIGINT handling (pytest-xdist's workers ignore SIGINT, and an ignored signal is inherited)
    build = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    items = folder / ".build" / "espeak-ng-en-us" / "items"
    deadline = time.time() + 240
    while not list(items.glob("*.json")) and build.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(build.pid, signal.SIGINT)
    out, err = build.communicate(timeout=120)
    assert build.returncode == 130, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"known-speech: interrupted: build stopped; what it finished is kept in {folder}, and the "
                          "same command resumes from there")
    kept = len(list(items.glob("*.json")))  # committed items (the JSON marks an item done; its FLAC comes first)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    built, reused = map(int, re.search(r"\((\d+) built now, (\d+) reused\)", again.stdout).groups())
    assert built + reused == 10 and built >= 1 and reused >= kept >= 1, again.stdout


def test_silent_or_foreign_audio_fails_its_item_instead_of_inventing_an_alignment(tmp_path, known_records):
    voice = tmp_path / "voice"
    voice.mkdir()
    soundfile.write(voice / "21.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    _espeak(voice / "65.wav", "Completely different words about the weather tomorrow morning")
    (voice / "manifest.json").write_text(json.dumps({"voice": "v", "files": {"21": "21.wav", "65": "65.wav"}}))
    result = build_dataset(tmp_path / "ds", engine="external", voice=str(voice), workers=1,
                           source=str(_source(tmp_path, known_records, (21, 65))))
    reasons = {f.known_id: (f.stage, f.reason) for f in result.summary.failures}
    assert reasons[21][0] == "synthesis" and "silent" in reasons[21][1]
    assert reasons[65][0] == "asr" and "no word of the prompt" in reasons[65][1]
    # the voice is fixed: --retry-failed builds both, and the split is what this build made (not the
    # item count cached by the last one)
    _espeak(voice / "21.wav", "The capital of Roman Republic is")
    _espeak(voice / "65.wav", "LGA seven seven five is created by")
    retried = build_dataset(tmp_path / "ds", engine="external", voice=str(voice), workers=1, retry_failed=True,
                            source=str(_source(tmp_path, known_records, (21, 65))))
    assert retried.summary.failed == 0
    assert load_dataset(str(tmp_path / "ds"), retried.voice_config, split="train")["known_id"] == [21, 65]


@pytest.mark.parametrize("prompt, transcript, other", [
    # what Whisper tiny.en heard of Piper's joe-medium in the full build: misheard, but this speech
    ("Drake Britton plays as the", "Great for it in places that...", False),
    ("Henrik Zetterberg, a citizen of", "Henry Exeter Bird, as it is enough.", False),
    ("Mauna Kea, in", "Monarchy. And...", False),
    ("Mojang is owned by", "Marching his own bye.", False),
    # Whisper's hallucination on silence, and nothing heard
    ("The capital of Italy is", "Thank you for watching.", True),
    ("Beats Music is owned by", "", True),
])
def test_misheard_names_are_kept_and_other_speech_is_not(prompt, transcript, other):
    assert heard_other_speech(prompt, transcript) is other


def test_manifest_paths_stay_in_the_manifest_folder_and_malformed_manifests_are_named(tmp_path, capsys):
    voice = tmp_path / "voice"
    voice.mkdir()
    for files, message in (({"0": "../../etc/passwd"}, "outside"), ({"0": "/etc/passwd"}, "outside"),
                           ({"x": "0.wav"}, r"expected \"<known_id>\"")):
        (voice / "manifest.json").write_text(json.dumps({"files": files}))
        assert cli_main(["build", "--engine", "external", "--voice", str(voice), "--out", str(tmp_path / "ds"),
                         "--limit", "1", "--workers", "1"]) == 2
        assert message and "manifest.json: field 'files'" in capsys.readouterr().err
    (voice / "manifest.json").write_text("{not json")
    assert cli_main(["build", "--engine", "external", "--voice", str(voice), "--out", str(tmp_path / "ds")]) == 2
    assert "manifest.json: not valid JSON" in capsys.readouterr().err


def test_source_records_are_refused_or_read_by_their_words(tmp_path, write_source):
    base = {"subject": "2", "attribute": "x", "template": "{}", "relation_id": "P1"}
    records = load_known(write_source([{**base, "known_id": 1, "prompt": "Version 3.2.1 and 2 are"}]))
    assert records[0].subject_char_span == (18, 19)  # the standalone "2", not the one inside "3.2.1"
    for record, message in (
        ({**base, "known_id": 2**63, "prompt": "2 is"}, "must fit a 32-bit integer"),
        ({**base, "known_id": 1, "prompt": "3.2.1 is"}, "only inside a word or number"),
        ({**base, "known_id": 1, "subject": "巴黎", "prompt": "巴黎是法国的首都"}, "written without spaces"),
    ):
        with pytest.raises(KnownSourceError, match=message):
            load_known(write_source([record]))
    assert verbalise("It costs $5 and €1.50").text == "It costs five dollars and one euro fifty cents"


def test_errors_name_the_input_and_the_fix_in_one_line(tmp_path, capsys, monkeypatch):
    assert cli_main(["trace", "--model", "no-such-org/no-such-model", "--unfiltered", "--limit", "1",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model 'no-such-org/no-such-model' could not be loaded" in err
    # refused before any model loads: the unloadable model is never reached
    assert cli_main(["trace", "--model", "no-such-org/no-such-model", "--kernels", "liger", "--unfiltered",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--kernels liger runs Triton kernels on CUDA only; use --device cuda" in err
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # not installed (it is an extra: known-speech[gpu])
    for extra, message in (([], "Liger Kernel is not installed; pip install 'known-speech[gpu]'"),
                           (["--compile"], "with --compile: torch.compile cannot trace Liger's RMSNorm")):
        assert cli_main(["trace", "--model", "no-such-org/no-such-model", "--kernels", "liger", "--device", "cuda",
                         *extra, "--unfiltered", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    for model, modality, message in (
            ("smollm2", "text", "--subject-swap: only with --modality speech"),
            ("Qwen/Qwen2-Audio-7B-Instruct", "speech", "--subject-swap: the qwen2-audio adapter reads speech as audio")):
        assert cli_main(["filter", "--model", model, "--modality", modality, "--subject-swap",
                         "--dataset", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    for typed, meant in (("spirit-smolm2", "spirit-smollm2"), ("whispr-smollm2", "whisper-smollm2"),
                         ("smolm2", "smollm2")):  # a bundled name mistyped: told at once, before a Hub lookup
        assert cli_main(["filter", "--model", typed, "--modality", "text", "--dataset", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--model {typed!r}: no such model; did you mean {meant!r}?" in err
    assert not (tmp_path / "none").exists()
    with pytest.raises(SystemExit):
        cli_main(["trace", "--model", "smollm2", "--noise-factor", "-1", "--out", str(tmp_path)])
    assert "expected a positive number" in capsys.readouterr().err and not list(tmp_path.rglob("run.json"))
    with pytest.raises(SystemExit):
        cli_main(["build", "--limit", "-1"])
    assert "--limit: '-1': expected a positive integer" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "kokoro_onnx", None)  # an optional engine that is not installed
    assert cli_main(["build", "--engine", "kokoro", "--voice", "af_sarah", "--out", str(tmp_path / "k"), "--limit", "1",
                     "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'known-speech[kokoro]'" in err and err.count("\n") == 1
    run = tmp_path / "run" / "items"
    run.mkdir(parents=True)
    (run.parent / "run.json").write_text(json.dumps({"config": {"model": "m", "adapter": "hf-text"}, "noise_std": 1.0}))
    (run / "3.npz").write_bytes(b"not a zip")
    assert cli_main(["report", str(run.parent)]) == 2
    assert "3.npz: not a readable trace result" in capsys.readouterr().err


def test_a_mistyped_model_fails_within_seconds_when_the_hub_cannot_be_reached(tmp_path):
    """Neither a folder, a file, an alias nor a cached Hub repo: one request to a Hub that does not answer
    (a closed local port), not the Hub client's retries (at least 23 s of back-off), then the usual one line.
    Timed after the imports, which a loaded machine makes slow."""
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub")}
    code = ("import time, datasets; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "from known_speech.loading import load_causal_lm\n"
            "started = time.perf_counter()\n"
            "try:\n    load_causal_lm('smolm2')\n"
            "except ValueError as err:\n    print(f'{time.perf_counter() - started:.1f}'); print(err)\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    seconds, message = completed.stdout.splitlines()
    assert float(seconds) < 10 and "Retrying" not in completed.stderr, completed.stderr
    assert message.startswith("model 'smolm2' could not be loaded: no such folder or file, not in the Hub cache, and "
                              "the Hub could not be reached (")
