"""Aggregation, categories, reports and the rank scheduler on small synthetic run folders: no model loads.

Each synthetic item has a known indirect effect at every position and layer, so category means, paired
differences and the report's statistics can be checked against numbers computed here by hand.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from known_speech.evaluation.aggregate import collect_effects, paired_difference
from known_speech.evaluation.categories import CATEGORIES
from known_speech.evaluation.model_input import PositionMap
from known_speech.evaluation.report import write_report
from known_speech.evaluation.run_config import TraceRunConfig
from known_speech.evaluation.run_folder import RunFolder, RunSettings
from known_speech.evaluation.sharding import balanced_shares
from known_speech.tracing import TraceOptions, TraceResult

LAYERS = 3
TEXT_TOKENS = ["The", " capital", " of", " Italy", " is"]  # subject " Italy": text token 3
LOW = 0.1


def _effect(item: int, position: int, layer: int, modality: str) -> float:
    """The synthetic indirect effect: distinct per item, position, layer and modality."""
    return 0.01 * item + 0.1 * position + 0.001 * layer + (0.05 if modality == "speech" else 0.0)


def _write_run(root, modality: str, items=(1, 2, 3), clean: dict[int, float] | None = None) -> RunFolder:
    """A run folder of `items`: text runs link position p to text token p; speech runs voice each text token
    with two positions, after a [Speech] marker that links to none. Clean scores 0.9 unless `clean` says."""
    config = TraceRunConfig(model="tiny", adapter="hf-text", modality=modality,
                            voice_config="voice" if modality == "speech" else "", trace=TraceOptions(kinds=("hidden",)))
    folder = RunFolder.of(config, root)
    folder.write_settings(RunSettings(config, noise_std=0.5))
    links = list(range(5)) if modality == "text" else [None] + [k for k in range(5) for _ in (0, 1)]
    folder.make_dirs()
    for item in items:
        table = np.array([[LOW + _effect(item, p, layer, modality) for layer in range(LAYERS)] for p in range(len(links))])
        result = TraceResult(tokens=[str(k) for k in links], subject_range=(3, 4), answer=" Rome", answer_id=7,
                             high_score=(clean or {}).get(item, 0.9), low_score=LOW, scores={"hidden": table}, noise_std=0.5,
                             options=TraceOptions(kinds=("hidden",)),
                             metadata={"positions": PositionMap(TEXT_TOKENS, links, (3, 4)).to_dict()})
        result.save(folder.item_file(item))
    return folder


def _expected_text_category(item: int, modality: str, category: str, layer: int) -> float:
    """By hand: subject = text token 3; first subsequent token: none (4 is the last); last token: 4."""
    token = {"first subject token": 3, "last subject token": 3, "last token": 4}[category]
    if modality == "text":
        return _effect(item, token, layer, modality)
    positions = [1 + 2 * token, 2 + 2 * token]  # the two positions voicing the token
    return float(np.mean([_effect(item, p, layer, modality) for p in positions]))


@pytest.mark.parametrize("modality", ["text", "speech"])
def test_category_effects_of_a_run_equal_the_hand_computed_means(tmp_path, modality):
    folder = _write_run(tmp_path, modality)
    run = collect_effects(folder.path)
    assert run.known_ids == [1, 2, 3] and run.effects["hidden"].shape == (3, len(CATEGORIES), LAYERS)
    for row, item in enumerate(run.known_ids):
        for category in ("first subject token", "last subject token", "last token"):
            for layer in range(LAYERS):
                got = run.effects["hidden"][row, CATEGORIES.index(category), layer]
                assert got == pytest.approx(_expected_text_category(item, modality, category, layer))
        for absent in ("middle subject tokens", "first subsequent token", "further tokens"):
            assert np.isnan(run.effects["hidden"][row, CATEGORIES.index(absent)]).all()
    np.testing.assert_allclose(run.total_effect, 0.9 - LOW)


def test_paired_difference_and_report_statistics(tmp_path):
    text, speech = _write_run(tmp_path, "text"), _write_run(tmp_path, "speech", items=(2, 3, 4))
    common, per_kind, total = paired_difference(collect_effects(text.path), collect_effects(speech.path))
    assert common == [2, 3]
    last = CATEGORIES.index("last token")
    # S→T − T→T at the last token: the two speech positions average 0.1 * (9 + 10) / 2 = 0.95 vs 0.4, + 0.05
    assert per_kind["hidden"].mean[last, 0] == pytest.approx(0.95 - 0.4 + 0.05)
    assert total.mean == pytest.approx(0.0)
    report = write_report([tmp_path / "tiny"])
    statistics = json.loads((report.out_dir / "statistics.json").read_text())
    text_stats = statistics[str(text.path)]
    assert text_stats["prompts"] == 3 and text_stats["noise_std"] == 0.5
    mean = np.mean([_expected_text_category(i, "text", "last token", 0) for i in (1, 2, 3)])
    assert text_stats["aie"]["hidden"]["mean"][last][0] == pytest.approx(mean)
    assert statistics["paired"]["tiny"]["known_ids"] == [2, 3]
    markdown = (report.out_dir / "report.md").read_text()
    assert "| total effect | 2 | 0.0000 (n=2, no interval) |" in markdown  # n per row; no interval of 2 values
    assert "tiny S→T voice: only n = 3 prompt(s)" in markdown  # the small-n warning
    # the control-free header: sigma and its calibration, the metric, n per run
    assert "| noise σ | 0.5 = 3 × std of the subjects' input embeddings over ? prompts (rome noise) |" in markdown
    assert "| n traced (subject · control span) | 3 · 0 | 3 · 0 |" in markdown


def test_report_warns_of_prompts_whose_corrupted_score_is_above_the_clean_one(tmp_path):
    _write_run(tmp_path, "text", clean={2: LOW / 2})
    markdown = (write_report([tmp_path / "tiny"]).out_dir / "report.md").read_text()
    assert ("> **Warning:** tiny T→T: 1 of 3 prompt(s) have a corrupted score above the clean one (known_id 2): a sign "
            "of a bad noise σ (0.5) or of a bad subject span.") in markdown


def test_run_folder_refuses_to_resume_with_other_settings(tmp_path):
    folder = _write_run(tmp_path, "text")
    config = folder.settings().config
    assert folder.resume(config).noise_std == 0.5
    config.limit = 2  # the selection may grow or shrink
    assert folder.resume(config) is not None
    changed = TraceRunConfig(model="tiny", adapter="hf-text", trace=TraceOptions(kinds=("hidden",), samples=3))
    with pytest.raises(ValueError, match=r"other settings \(trace.samples: 10 → 3\); use another --out"):
        folder.resume(changed)
    # the same model name, retrained: a resumed run would mix items of two deltas
    saved = replace(folder.settings(),
                    provenance={"model": "tiny", "delta": {"files": {"adapter_model.safetensors": "aab5398ed5550400" * 4}}})
    folder.check_model(saved, saved.provenance)
    retrained = {"model": "tiny", "delta": {"files": {"adapter_model.safetensors": "de07987b138cf6e9" * 4}}}
    with pytest.raises(ValueError, match=r"another build of tiny \(delta.files.adapter_model.safetensors: "
                                         r"aab5398ed5550400… → de07987b138cf6e9…\); use another --out"):
        folder.check_model(saved, retrained)
    assert folder.finished(1, control=False, retry_failed=False) and not folder.finished(1, control=True, retry_failed=False)
    folder.record_failure(9, "prepare: no subject")
    assert folder.finished(9, control=False, retry_failed=False) and not folder.finished(9, control=False, retry_failed=True)


def test_scheduler_gives_the_costliest_items_out_first_to_the_least_loaded_rank():
    costs = {1: 10.0, 2: 9.0, 3: 8.0, 4: 3.0, 5: 2.0, 6: 2.0, 7: 0.0}
    shares = balanced_shares(costs, 2)
    # by hand (LPT): 10 -> r0, 9 -> r1, 8 -> r1 (9 < 10), 3 -> r0 (10 < 17), 2 -> r0 (13 < 17), 2 -> r0 (15 < 17),
    # then 17 = 17: the tie goes to the lower rank, 0 -> r0
    assert shares == [[1, 4, 5, 6, 7], [2, 3]]
    assert balanced_shares(costs, 1) == [sorted(costs)]
    assert sorted(i for share in balanced_shares(costs, 5) for i in share) == sorted(costs)


def test_panels_give_n_per_row_and_hatch_the_negative_cells_of_the_log_scale():
    """A panel of 2 prompts whose second row has n=1 says so beside the row; on the log scale a negative
    cell (drawn at the floor, like a near-zero one) is hatched, on the signed scale it needs no hatch."""
    from known_speech.evaluation.aggregate import Estimate
    from known_speech.evaluation.figures import Panel, panel_figure

    mean = np.array([[0.1, 0.2], [-0.05, 1e-5], [np.nan, np.nan]])
    estimate = Estimate(mean, mean, mean, np.array([[2, 2], [1, 1], [0, 0]]))
    panel = Panel("run", {"hidden": estimate}, 2, ("a", "b", "c"))
    for scale, hatched in (("log", [(0, 1)]), ("signed", [])):
        axis = panel_figure([panel], ["hidden"], scale, "AIE").axes[0]
        assert [label.get_text() for label in axis.child_axes[0].get_yticklabels()] == ["n=2", "n=1", "n=0"]
        assert [tuple(int(v) for v in patch.get_xy()) for patch in axis.patches if patch.get_hatch()] == hatched
        assert "(n=" not in axis.get_title()
