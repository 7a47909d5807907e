import json
import subprocess
import sys

import pytest

from known_speech.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "build" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    for flag in ("--engine", "--voice", "--limit", "--out", "--source", "--asr-model", "--workers"):
        assert flag in out


def test_malformed_source_exits_with_named_error(tmp_path, capsys):
    source = tmp_path / "bad.json"
    source.write_text(json.dumps([{"known_id": 5, "subject": "Paris", "attribute": "France", "template": "{} is in",
                                   "prompt": "Rome is in", "relation_id": "P17"}]))
    assert main(["build", "--source", str(source), "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "record #0 (known_id=5)" in err and "'subject'" in err and "'prompt'" in err


def test_unknown_engine_is_refused(tmp_path, capsys):
    assert main(["build", "--engine", "festival", "--out", str(tmp_path / "out")]) == 2
    assert "engine='festival' is not known; choose one of ['espeak-ng', 'external', 'kokoro', 'melotts', 'piper'" in capsys.readouterr().err


def test_a_carrier_count_out_of_range_is_refused_before_anything_is_spoken(tmp_path, capsys):
    assert main(["corpus", "--out", str(tmp_path / "corpus"), "--names", "known-subjects", "--name-carriers", "9"]) == 2
    assert "--name-carriers 9: choose from 0 to 8" in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()


@pytest.mark.slow
def test_tracing_module_is_the_trace_prompt_command(tmp_path):
    """`python -m known_speech.tracing` takes trace's options (--kinds, --metric), errs in one line, and draws
    no progress bar where its output is no terminal."""
    out = tmp_path / "trace"
    argv = [sys.executable, "-m", "known_speech.tracing", "--model", "smollm2", "--prompt", "The capital of Italy is"]
    refused = subprocess.run([*argv, "--subject", "France"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr == (
        "known-speech: error: subject 'France' does not occur in prompt 'The capital of Italy is' as whole words "
        "(run with -v for the traceback)\n")
    completed = subprocess.run([*argv, "--subject", "Italy", "--kinds", "mlp", "--metric", "logprob", "--samples", "4",
                                "--out", str(out)], capture_output=True, text=True, timeout=600, check=True)
    assert "mlp: peak" in completed.stdout and "Loading weights" not in completed.stderr
    from known_speech.tracing import TraceResult

    result = TraceResult.load(out / "trace.npz")
    assert result.answer == " Rome" and list(result.scores) == ["mlp"] and result.options.metric == "logprob"
    assert (out / "trace.png").stat().st_size > 10_000 and (out / "trace.pdf").exists()


@pytest.mark.parametrize("position", ["before", "after"])
def test_verbose_is_accepted_before_and_after_the_subcommand(tmp_path, position):
    """Every error ends "(run with -v for the traceback)": -v shows it wherever it is put."""
    argv = ["report", str(tmp_path / "no-runs")]
    with pytest.raises(ValueError, match="not a trace run folder"):
        main(["-v", *argv] if position == "before" else [*argv, "-v"])


def test_progress_logs_items_rate_and_time_left_where_there_is_no_bar(caplog):
    """Output that is no terminal (a log file, CI) gets a log line at least every `log_every` seconds instead of a
    bar; a terminal's bar is tqdm's own."""
    import io
    import logging

    from known_speech.progress import progress

    with caplog.at_level(logging.INFO, logger="known_speech.progress"):
        bar = progress(total=4, desc="filter m (text)", unit="item", file=io.StringIO(), log_every=0.0)
        for _ in range(4):
            bar.update(1)
        bar.close()
        assert list(progress(range(3), desc="trace", unit="item", file=io.StringIO(), log_every=0.0)) == [0, 1, 2]
        quiet = progress(total=2, desc="build", unit="item", file=io.StringIO())  # every 30 s: no line yet
        quiet.update(2)
    lines = [record.getMessage() for record in caplog.records if record.name == "known_speech.progress"]
    assert len(lines) == 7 and lines[0].startswith("filter m (text): 1/4 items, ") and " items/s, " in lines[0]
    assert lines[3].endswith("0 min 0 s left") and lines[-1].startswith("trace: 3/3 items, ")
