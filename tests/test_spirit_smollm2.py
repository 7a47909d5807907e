"""spirit-smollm2, the speech LM trained here, on CPU with the shipped delta: it loads only as shipped (by
hash), its inputs are Spirit LM's formats with the subject where its units are, and it listens: held-out
speech is transcribed, facts are recalled from speech, and corrupting the subject's units matters more
than corrupting other units. Shuffled units or a subject span moved by a word break these."""

import json
import shutil

import numpy as np
import pytest

from known_speech.evaluation.organism.delta import MANIFEST, OrganismDelta

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def delta_copy(tmp_path_factory):
    source = OrganismDelta.resolve("spirit-smollm2").folder
    target = tmp_path_factory.mktemp("delta") / "spirit-smollm2"
    shutil.copytree(source, target)
    return target


def test_the_shipped_delta_is_small_and_hashed():
    delta = OrganismDelta.resolve("spirit-smollm2")
    size = sum(p.stat().st_size for p in delta.folder.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"the delta takes {size / 2**20:.1f} MB"
    assert delta.manifest["training"]["steps"] > 0 and delta.num_units == 500


def test_a_corrupt_or_foreign_delta_is_refused(delta_copy, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(delta_copy, corrupt)
    data = bytearray((corrupt / "adapter_model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (corrupt / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="adapter_model.safetensors: sha256 .* corrupt"):
        OrganismDelta.resolve(str(corrupt))
    foreign = tmp_path / "foreign"
    shutil.copytree(delta_copy, foreign)
    manifest = json.loads((foreign / MANIFEST).read_text())
    manifest["backbone"]["gguf_sha256"] = "0" * 64
    (foreign / MANIFEST).write_text(json.dumps(manifest))
    from known_speech.evaluation.organism.delta import load_organism

    with pytest.raises(ValueError, match="trained on the GGUF with sha256 000000000000"):
        load_organism(str(foreign))
    with pytest.raises(ValueError, match="no organism.json"):
        OrganismDelta.resolve(str(tmp_path))
