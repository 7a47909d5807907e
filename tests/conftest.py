import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the Hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def write_source(tmp_path):
    """Write a Known-format JSON list and return its path."""

    def write(records, name="known.json"):
        path = tmp_path / name
        path.write_text(json.dumps(records), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def known_records():
    from known_speech.source import load_known

    return load_known()


@pytest.fixture(scope="session")
def smollm2():
    from known_speech.tracing.loading import load_causal_lm

    return load_causal_lm("smollm2")
