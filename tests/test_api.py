"""The README: Markdown that renders (every fence closed on a line of its own), a command block that lists every
option of every command, and its Python API block, run as written on the real SmolLM2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks_by_section() -> dict[str, list]:
    """The README's fenced blocks (markdown-it tokens, as CommonMark renders them) under each `##` heading."""
    from markdown_it import MarkdownIt

    blocks: dict[str, list] = {}
    tokens = MarkdownIt("commonmark").enable("table").parse(README.read_text(encoding="utf-8"))
    section = ""
    for token, following in zip(tokens, tokens[1:]):
        if token.type == "heading_open" and token.tag == "h2":
            section = following.content
        elif token.type == "fence":
            blocks.setdefault(section, []).append(token)
    return blocks


def _api_block() -> str:
    return next(block.content for block in _blocks_by_section()["Python API"] if block.info == "python")


def test_readme_fences_each_close_on_a_line_of_their_own():
    """A fence with text after it does not close: the rest of the README would render as code."""
    lines = README.read_text(encoding="utf-8").splitlines()
    fences = [block for blocks in _blocks_by_section().values() for block in blocks]
    assert len(fences) >= 6
    for block in fences:
        start, end = block.map
        assert lines[end - 1] == block.markup, f"README.md:{start + 1}: the fence opened here closes at line {end}"
        assert not any(line.lstrip().startswith("```") for line in block.content.splitlines())


def test_readme_commands_list_every_option_with_its_help():
    """The command block names every option of every subcommand (those of all: -v, --progress, aside), and
    every argument has a help text."""
    import argparse

    from known_speech.cli import build_parser

    block = next(b.content for b in _blocks_by_section()["Commands"] if "known-speech build" in b.content)
    usage: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith("known-speech "):
            command = line.split()[1]
            usage[command] = line
        elif line.startswith(" ") and usage:
            usage[command] += line
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subcommands) <= set(usage)
    missing = []
    for name, parser in subcommands.items():
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS) and not isinstance(action, argparse._HelpAction):
                missing.append(f"{name} {action.dest}: no help")
            options = [option for option in action.option_strings if option.startswith("--")]
            if options and not set(options) & {"--help", "--verbose", "--progress"} and \
                    not any(re.search(rf"{re.escape(option)}\b", usage[name]) for option in options):
                missing.append(f"{name} {options[0]}: not in the README")
    assert missing == []


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


def test_loading_a_model_needs_no_datasets_package():
    """spirit-smollm2 trains on a GPU host that has torch, transformers and peft but not `datasets` (the staged
    package, benchmarks/organism_stage.sh): switching the libraries' bars off must not import it there."""
    code = ("import sys; sys.modules['datasets'] = None\n"
            "from known_speech.progress import configure_progress, bars_disabled\n"
            "configure_progress(); print(bars_disabled())")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and completed.stdout.strip() == "None", completed.stderr
