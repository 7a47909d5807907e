"""What `corpus` and `organism` do (`cli_organisms` parses them): the organisms' speech corpus, and the training of
spirit-smollm2 (discrete) and whisper-smollm2 (continuous) from it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from known_speech.builders.corpus import CorpusOptions

__all__ = ["corpus", "organism"]


def corpus(args: argparse.Namespace) -> int:
    from known_speech.builders.corpus import CorpusOptions, build_corpus

    stats = build_corpus(CorpusOptions(out=args.out, voice=args.voice, limit=args.limit, name_limit=args.name_limit,
                                       fact_limit=args.fact_limit, fact_city_population=args.fact_city_population,
                                       fact_relations=args.fact_relations,
                                       workers=args.workers,
                                       fortunes_dir=args.fortunes, names=args.names, name_carriers=args.name_carriers,
                                       facts=tuple(args.facts)))
    print(f"{stats['utterances']} utterances ({stats['audio_hours']:.1f} h) of {stats['sentences']} sentences, "
          f"{len(stats['failed'])} failed; {args.out}/corpus_stats.json")
    print(f"load it with: known_speech.builders.corpus.load_corpus({args.out!r})")
    return 0


def corpus_options_to_complete(args: argparse.Namespace, built: dict) -> CorpusOptions:
    """The corpus options that the organism command builds with: the built corpus's own (its --limit, names,
    carriers, name limit, fact sources, fact limit, smallest city and relations), with what the command adds. A
    corpus made by `corpus --limit N` stays one of N sentences a source (without the limit, its fact selections
    would be made and spoken anew at full size)."""
    from known_speech.builders.corpus import CorpusOptions
    from known_speech.builders.corpus_facts import DEFAULT_FACT_RELATIONS, MIN_CITY_POPULATION
    from known_speech.builders.corpus_text import DEFAULT_NAME_CARRIERS

    options = built.get("options", {})
    carriers = args.name_carriers if args.name_carriers is not None else options.get("name_carriers", DEFAULT_NAME_CARRIERS)
    return CorpusOptions(out=args.corpus, voice=args.voice, fortunes_dir=args.fortunes, limit=options.get("limit"),
                         name_limit=options.get("name_limit"), fact_limit=options.get("fact_limit"),
                         fact_city_population=options.get("fact_city_population", MIN_CITY_POPULATION),
                         fact_relations=options.get("fact_relations", DEFAULT_FACT_RELATIONS),
                         names=args.names or built.get("names", {}).get("source"), name_carriers=carriers,
                         facts=tuple(dict.fromkeys(tuple(built.get("facts", {})) + tuple(args.facts))))


def _continuous_organism(args: argparse.Namespace) -> int:
    """whisper-smollm2: the corpus, its bundle (no held-out voice), the training on a GPU, the delta folder."""
    import datasets

    from known_speech.builders.corpus import build_corpus, load_corpus, read_corpus_stats, waveform
    from known_speech.evaluation.organism.continuous import package_continuous
    from known_speech.evaluation.organism.continuous_data import write_bundle
    from known_speech.settings import bundled_smollm2_gguf, bundled_whisper_dir, check_training_voice
    from known_speech.loading import load_causal_lm

    out = Path(args.out)
    build_corpus(corpus_options_to_complete(args, read_corpus_stats(args.corpus)))
    bundle_dir = out / "bundle" / "continuous"
    if not (bundle_dir / "bundle.json").exists():
        corpus = load_corpus(args.corpus).cast_column("audio", datasets.Audio(decode=False))
        for voice in {(row["engine"], row["voice"]) for row in corpus["voice"]}:
            check_training_voice(*voice)
        rows = ({**{k: row[k] for k in ("utterance_id", "split", "kind", "text")}, "waveform": waveform(row)}
                for row in corpus)
        write_bundle(rows, bundle_dir, load_causal_lm("smollm2")[1], bundled_whisper_dir() / "model.bin",
                     bundled_smollm2_gguf())
    print(f"bundle: {bundle_dir}")
    if args.stage == "bundle":
        return 0
    from known_speech.evaluation.organism.continuous_train import ContinuousTrainOptions, train_continuous

    run_dir = out / "runs" / f"continuous-seed{args.seed}"
    record = train_continuous(ContinuousTrainOptions(bundle=str(bundle_dir), gguf=str(bundled_smollm2_gguf()),
                                                     out=str(run_dir), minutes_projector=args.projector_minutes,
                                                     minutes_lora=args.minutes, seed=args.seed, device=args.device))
    print(f"trained: {record['steps']} steps; {run_dir}")
    if args.stage == "train":
        return 0
    delta = out / "whisper-smollm2"
    package_continuous(run_dir, delta)
    print(f"delta: {delta} (use it with --model {delta})")
    return 0


def organism(args: argparse.Namespace) -> int:
    """Every stage that is not done yet: corpus, unit tokenizer, its units, bundle, training, delta folder."""
    if args.kind == "continuous":
        return _continuous_organism(args)
    from known_speech.builders.corpus import build_corpus, read_corpus_stats
    from known_speech.builders.corpus_units import corpus_units, fit_corpus_phone_tokenizer, fit_corpus_tokenizer
    from known_speech.evaluation.organism.bundle import BUNDLE_VERSION, make_bundle, paired_init_label, read_bundle
    from known_speech.evaluation.organism.delta import delta_unit_rows, package_organism
    from known_speech.evaluation.organism.train import TrainOptions, check_init_tokenizer, init_source, train
    from known_speech.phone_units import PHONE_UNITS_KIND
    from known_speech.whisper_units import TOKENIZER_FILE, UnitTokenizerSpec, load_tokenizer_folder

    oracle = args.units == PHONE_UNITS_KIND  # Piper's own phone labels: the upper bound, no encoder
    units_name = f"{PHONE_UNITS_KIND}-{args.rate:g}hz" if oracle else \
        UnitTokenizerSpec(args.units, "tiny.en", args.window, args.rate, args.k).name
    out = Path(args.out)
    if args.stage != "bundle" and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no GPU here; stop after the CPU stages with --stage bundle, or pass "
                             "--device cpu (slow)")
    init_record = init_source(args.init_from)[1] if args.init_from else None
    tokenizer_dir = out / "unit_tokenizer" / units_name

    def refuse_another_tokenizer() -> None:
        """--init-from trained on other units: refused as soon as this run's tokenizer is on disk (before the corpus
        stage where it was fitted before, else right after the fit), not after the units, bundle and backbone."""
        if init_record is not None and args.init_units == "same" and (tokenizer_dir / TOKENIZER_FILE).exists():
            ours = load_tokenizer_folder(tokenizer_dir)
            check_init_tokenizer(args.init_from, init_record, ours.name, ours.checkpoint_sha256)

    refuse_another_tokenizer()
    # build_corpus skips the shards already spoken, and remakes a fact selection of an older rule with its shards
    corpus_stats = build_corpus(corpus_options_to_complete(args, read_corpus_stats(args.corpus)))
    if not (tokenizer_dir / TOKENIZER_FILE).exists() and oracle:
        fit_corpus_phone_tokenizer(args.corpus, tokenizer_dir, args.rate, args.fit_utterances)
    elif not (tokenizer_dir / TOKENIZER_FILE).exists():
        fit_corpus_tokenizer(args.corpus, UnitTokenizerSpec(args.units, "tiny.en", args.window, args.rate, args.k),
                             tokenizer_dir, args.fit_utterances)
    refuse_another_tokenizer()
    corpus_units(args.corpus, tokenizer_dir)
    # a delta of another tokenizer to go on from: its units of this corpus, so the new units start at its rows
    paired = delta_unit_rows(args.init_from) if args.init_from and args.init_units == "fresh" else None
    if paired is not None:  # its tokenizer beside ours, under its own name, so its units of the corpus have their own folder
        theirs = load_tokenizer_folder(paired[0])
        paired_dir = out / "unit_tokenizer" / theirs.name
        if not (paired_dir / TOKENIZER_FILE).exists():
            theirs.save(paired_dir)
        elif load_tokenizer_folder(paired_dir).checkpoint_sha256 != theirs.checkpoint_sha256:
            raise ValueError(f"{paired_dir}: another unit tokenizer of the name of --init-from's; remove the folder")
        corpus_units(args.corpus, paired_dir)
        paired = (paired_dir, paired[1])
    bundle_dir = out / "bundle" / units_name
    built = read_bundle(bundle_dir) if (bundle_dir / "bundle.json.gz").exists() else None
    what = ("utterances", "names", "facts")
    if built is None or built.version < BUNDLE_VERSION or built.unit_init_from != paired_init_label(paired) or \
            [built.corpus.get(k) for k in what] != [corpus_stats.get(k) for k in what]:  # none, older, or changed
        make_bundle(args.corpus, tokenizer_dir, bundle_dir, paired)
    print(f"bundle: {bundle_dir}")
    if args.stage == "bundle":
        return 0
    run_dir = out / "runs" / (f"{units_name}-seed{args.seed}" + (f"-from-{Path(args.init_from).name}" if args.init_from else ""))
    record = train(TrainOptions(bundle=str(bundle_dir), out=str(run_dir), minutes=args.minutes, seed=args.seed,
                                device=args.device, batch_tokens=args.batch_tokens, init_from=args.init_from,
                                pool_size=max(64, min(4096, args.batch_tokens // 4)), lr_lora=args.lr_lora,
                                lr_embeddings=args.lr_embeddings, keep_last=args.keep == "last",
                                init_units=args.init_units,
                                entity_sources=args.entity_sources, state_teacher=args.state_teacher,
                                state_layers=args.state_layers,
                                **({"mix": args.mix} if args.mix else {})))
    print(f"trained: {record['steps']} steps, best held-out loss {record['best_held_out_ce']:.3f}; {run_dir}")
    if args.stage == "train":
        return 0
    delta = out / "spirit-smollm2"
    package_organism(run_dir, tokenizer_dir, delta, weights="delta-last" if args.keep == "last" else "delta")
    print(f"delta: {delta} (use it with --model {delta})")
    return 0
