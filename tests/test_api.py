"""The README's Python API block, run as written on the real SmolLM2, and what it must have produced."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_api_block(), str(README), "exec"), namespace)
    result, whole = namespace["result"], namespace["whole"]
    assert result.answer == " Rome" and result.high_score > 0.2 > result.low_score  # SmolLM2 recalls Rome
    assert result.metadata["answer_pieces"] == ["ĠRome"] and set(result.scores) == {"hidden", "mlp"}
    assert result.metadata["engine"] == {"compiled": False, "kernels": "torch", "shared_prefix_attention": True,
                                         "device": "cpu"}
    assert (tmp_path / "italy.pdf").read_bytes().startswith(b"%PDF")
    # the whole attribute, teacher-forced: several tokens, a log-probability, input = prompt + all but the last
    tokenizer = namespace["tokenizer"]
    assert tokenizer.convert_ids_to_tokens(whole.answer_ids) == ["ĠAg", "ra"]  # " Agra": two tokens
    assert whole.input_ids == tokenizer("The Taj Mahal is located in the city of Agra")["input_ids"][:-1]
    assert whole.options.metric == "attribute" and whole.low_score < whole.high_score < 0  # a log-probability
    assert "MLP peak at" in capsys.readouterr().out


def test_package_exports_the_api():
    import known_speech

    for name in known_speech.__all__:
        assert getattr(known_speech, name) is not None
    with pytest.raises(AttributeError):
        known_speech.nope  # noqa: B018


@pytest.mark.slow
def test_the_api_draws_no_progress_bar_where_its_output_is_no_terminal():
    """The CLI's rule, bars only on a terminal, holds for the Python API too: no "Loading weights" in a log."""
    code = "import known_speech; known_speech.load_causal_lm('smollm2')"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert "Loading weights" not in completed.stderr and "it/s]" not in completed.stderr, completed.stderr
