"""Loss curves of spirit-smollm2 training runs, from their `training.json`: the figure that says whether a run
was still learning when its budget ended, and where its held-out loss stood."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from known_speech.plotting import pyplot, save_figure

__all__ = ["plot_training"]

# (history key, panel title): the train losses that a run logs every 25 steps
PANELS = (("ce", "train: next-token CE (text targets)"), ("kl", "train: KL to the backbone on the same words"),
          ("state", "train: state alignment"))


def plot_training(runs: dict[str, dict], path: str | Path) -> Path:
    """One panel per train loss and one for the held-out CE, a line per run (name → training.json's record); a run
    that went on from another (`--init-from`) is drawn from the step where that one ended."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(PANELS) + 1, figsize=(4.2 * (len(PANELS) + 1), 3.4))
    for (name, record), colour in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 9):
        history = record["history"]
        offset = _steps_before(record)
        for axis, (key, title) in zip(axes, PANELS):
            points = [(offset + h["step"], h[key]) for h in history if key in h]
            if points:
                axis.plot(*zip(*points), label=name, color=colour)
            axis.set_title(title, fontsize=9)
        held = [(offset + e["step"], e["held_out_ce"]) for e in record["evaluations"]]
        if held:
            axes[-1].plot(*zip(*held), marker="o", color=colour, label=f"{name} (best at {offset + (record.get('best_step') or 0)})")
        asr = [(offset + e["step"], e["held_out_ce_by_kind"]["speech_to_text"]) for e in record["evaluations"]
               if "speech_to_text" in e.get("held_out_ce_by_kind", {})]
        if asr:  # runs since run 4 keep the transcription pairs' CE apart: the part that WER follows
            axes[-1].plot(*zip(*asr), marker=".", linestyle="--", color=colour, label=f"{name}: transcription pairs")
    axes[-1].set_title("held-out CE (the corpus's test split)", fontsize=9)
    for axis in axes:
        axis.set_xlabel("step (of all the runs a delta went on from)")
        axis.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # a run shorter than 25 steps has no logged point
        axes[0].legend(fontsize=8)
    if axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside: the lines fill the panel
    first = next(iter(runs.values()))
    figure.suptitle(f"spirit-smollm2 training ({first.get('device', '?')}, seed {first['options']['seed']})", fontsize=10, y=1.04)
    return save_figure(figure, path)


def _steps_before(record: dict) -> int:
    """The steps of the runs that this one went on from (`init_from`, followed back to a fresh start)."""
    steps, source = 0, record.get("init_from")
    while source:
        steps += source.get("steps") or 0
        source = source.get("init_from")
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m known_speech.evaluation.organism.curves",
                                     description="Draw the loss curves of spirit-smollm2 training runs.")
    parser.add_argument("runs", nargs="+", help="run folders (with training.json) or training.json files; "
                                                "NAME=PATH names a line")
    parser.add_argument("--out", required=True, help="figure file (.png, .pdf or .svg)")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, _, where = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
        path = Path(where)
        path = path / "training.json" if path.is_dir() else path
        if not path.is_file():
            parser.error(f"{where}: no training.json there; give a run folder that `organism` or the trainer wrote")
        runs[name] = json.loads(path.read_text())
    print(plot_training(runs, args.out))


if __name__ == "__main__":
    main()
