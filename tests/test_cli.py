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


@pytest.mark.slow
def test_tracing_module_cli_writes_result_and_heatmap(tmp_path):
    out = tmp_path / "trace"
    completed = subprocess.run(
        [sys.executable, "-m", "known_speech.tracing", "--model", "smollm2", "--prompt", "The capital of Italy is",
         "--subject", "Italy", "--kind", "mlp", "--samples", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    assert "mlp: peak" in completed.stdout
    from known_speech.tracing import TraceResult

    result = TraceResult.load(out / "trace.npz")
    assert result.answer == " Rome" and list(result.scores) == ["mlp"]
    assert (out / "trace.png").stat().st_size > 10_000 and (out / "trace.pdf").exists()


@pytest.mark.parametrize("position", ["before", "after"])
def test_verbose_is_accepted_before_and_after_the_subcommand(tmp_path, position):
    """Every error ends "(run with -v for the traceback)": -v shows it wherever it is put."""
    argv = ["report", str(tmp_path / "no-runs")]
    with pytest.raises(ValueError, match="not a trace run folder"):
        main(["-v", *argv] if position == "before" else [*argv, "-v"])
