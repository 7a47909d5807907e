"""How much a unit tokenizer's units say about the phones spoken: HuBERT's measures (Hsu et al. 2021, §IV-D).

With frame-level phone labels (Piper's exact phoneme durations give them for synthetic speech):
- phone purity: the frames whose phone is the most common phone of their unit (how pure a unit is);
- cluster purity: the frames whose unit is the most common unit of their phone (how scattered a phone is);
- PNMI: the mutual information of phone and unit over the phone's entropy (the share of the phone's
  uncertainty a unit removes);
- de-duplication: the share of frames that collapse into their left neighbour's run (shorter LM input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["UnitQuality", "unit_quality", "frame_labels"]


@dataclass(frozen=True)
class UnitQuality:
    phone_purity: float
    cluster_purity: float
    pnmi: float
    dedup_removed: float  # share of frames removed by de-duplication
    frames: int
    units_used: int
    phones: int

    def to_dict(self) -> dict:
        return asdict(self)


def frame_labels(phonemes: list[dict], num_frames: int, rate_hz: float) -> list[str | None]:
    """The phoneme at each frame's centre ({phoneme, start_s, end_s} records); None past the last one."""
    starts = np.array([p["start_s"] for p in phonemes])
    ends = np.array([p["end_s"] for p in phonemes])
    labels: list[str | None] = []
    for frame in range(num_frames):
        centre = (frame + 0.5) / rate_hz
        index = int(np.searchsorted(starts, centre, side="right")) - 1
        labels.append(phonemes[index]["phoneme"] if index >= 0 and centre < ends[index] else None)
    return labels


def unit_quality(units: list[np.ndarray], labels: list[list[str | None]]) -> UnitQuality:
    """The measures over utterances' unit sequences and frame labels (frames without a label are left out
    of purity and PNMI, not of de-duplication)."""
    flat_units, flat_labels = [], []
    frames = removed = 0
    for sequence, sequence_labels in zip(units, labels):
        if len(sequence) != len(sequence_labels):
            raise ValueError(f"{len(sequence)} units but {len(sequence_labels)} frame labels")
        frames += len(sequence)
        removed += int(np.count_nonzero(sequence[1:] == sequence[:-1]))
        for unit, label in zip(sequence, sequence_labels):
            if label is not None:
                flat_units.append(int(unit))
                flat_labels.append(label)
    phones = sorted(set(flat_labels))
    phone_index = {p: i for i, p in enumerate(phones)}
    unit_ids, unit_index = np.unique(np.array(flat_units), return_inverse=True)
    joint = np.zeros((len(unit_ids), len(phones)))
    np.add.at(joint, (unit_index, np.array([phone_index[p] for p in flat_labels])), 1)
    total = joint.sum()
    p_joint = joint / total
    p_unit, p_phone = p_joint.sum(1, keepdims=True), p_joint.sum(0, keepdims=True)
    nonzero = p_joint > 0
    mutual = float((p_joint[nonzero] * np.log(p_joint[nonzero] / (p_unit @ p_phone)[nonzero])).sum())
    phone_entropy = float(-(p_phone[p_phone > 0] * np.log(p_phone[p_phone > 0])).sum())
    return UnitQuality(
        phone_purity=float(joint.max(1).sum() / total),
        cluster_purity=float(joint.max(0).sum() / total),
        pnmi=mutual / phone_entropy if phone_entropy else 0.0,
        dedup_removed=removed / frames if frames else 0.0,
        frames=frames, units_used=len(unit_ids), phones=len(phones),
    )
