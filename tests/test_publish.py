"""Publishing with the real `huggingface_hub` client to a loopback Hub (tests/hub_server.py) that records
what it is sent: exactly the files the dry run lists, never a dot-file or a stranger's file, and a failed
upload takes its version entry back."""

import json
import shutil

import pytest

from known_speech.cli import main as cli_main

from .hub_server import fake_hub

pytestmark = pytest.mark.slow


@pytest.fixture
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1; these tests talk to the loopback Hub only."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _listed(printed: str) -> list[str]:
    """The files a publish plan prints (`  path  (size)` lines)."""
    return [line.split("  (")[0].strip() for line in printed.splitlines() if line.startswith("  ") and "  (" in line]


def test_publish_uploads_exactly_what_the_dry_run_lists(spoken_dataset, tmp_path, capsys, online):
    out = tmp_path / "known-speech"
    shutil.copytree(spoken_dataset, out)
    (out / ".env").write_text("HF_TOKEN=hf_secret")
    (out / ".secret").mkdir()
    (out / ".secret" / "key").write_text("private key")
    (out / "notes.txt").write_text("my notes, not data")
    (out / "piper-en_US-joe-medium" / ".DS_Store").write_text("x")
    argv = ["publish", "--repo", "me/known-speech", "--tag", "v1.0.0", "--dataset", str(out), "--allow-failed"]
    assert cli_main(argv + ["--dry-run"]) == 0
    dry_run = _listed(capsys.readouterr().out)
    assert "README.md" in dry_run and "piper-en_US-joe-medium/train-00000-of-00001.parquet" in dry_run
    with fake_hub() as (endpoint, hub):
        assert cli_main(argv + ["--endpoint", endpoint]) == 0
    uploaded = sorted(hub.committed)
    assert uploaded == sorted(dry_run) == sorted(_listed(capsys.readouterr().out))
    assert not [path for path in uploaded if any(part.startswith(".") for part in path.split("/"))]
    assert "notes.txt" not in uploaded and b"hf_secret" not in b"".join(hub.committed.values())
    assert hub.committed["piper-en_US-joe-medium/train-00000-of-00001.parquet"] == \
        (out / "piper-en_US-joe-medium" / "train-00000-of-00001.parquet").read_bytes()
    assert json.loads(hub.committed["versions.json"])[0]["tag"] == "v1.0.0" and hub.tags[0]["tag"] == "v1.0.0"
    # the source it was built from travels with it: a Hub user's text prompts are the same facts
    assert hub.committed["source.json"] == (out / "source.json").read_bytes()
    assert "v1.0.0" in hub.validated[0]  # the card sent for YAML validation carries the version


def test_a_failed_upload_takes_its_version_entry_back(spoken_dataset, tmp_path, capsys, online):
    out = tmp_path / "known-speech"
    shutil.copytree(spoken_dataset, out)
    card = (out / "README.md").read_text()
    with fake_hub() as (endpoint, hub):
        hub.fail_commit = True
        assert cli_main(["publish", "--repo", "me/known-speech", "--tag", "v2.0.0", "--dataset", str(out),
                         "--allow-failed", "--endpoint", endpoint]) == 2
    assert "500" in capsys.readouterr().err and ("POST", "/api/datasets/me/known-speech/commit/main") in hub.requests
    assert not (out / "versions.json").exists() and (out / "README.md").read_text() == card and not hub.tags
