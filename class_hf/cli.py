"""The ``class-hf`` command line: ``prepare``, ``score`` and ``evaluate`` (more subcommands register themselves).

Examples::

    class-hf prepare --source /path/to/chebi20 --out data/chebi20 --fingerprints
    class-hf score --data data/chebi20 --source fingerprint --text-encoder sentence-transformers/all-MiniLM-L6-v2 \\
        --out data/chebi20-scored [--push-to-hub ORG/chebi20-class-difficulty]
    class-hf evaluate --model runs/orma --data data/chebi20 --split test --pool all

To add a subcommand, write ``_my_arguments(parser)`` and ``my_command(args) -> int`` and call
``register_command("my", "one-line help", _my_arguments, my_command)`` at the bottom of this module.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .runtime import configure_cpu_threads
from .user_errors import DEBUG_ENV, debug_requested, unknown_arguments, user_errors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """A ``class-hf`` subcommand: its help line, how it declares its arguments and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[str, Command] = {}


def register_command(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
) -> None:
    """Registers a subcommand ``class-hf <name>``.

    Args:
        name (str): the subcommand's name.
        help (str): one line shown by ``class-hf --help``.
        add_arguments (Callable): adds the subcommand's options to its ``argparse`` parser.
        run (Callable): runs it from the parsed arguments; returns the exit status (None means 0).
    """
    if name in COMMANDS:
        raise ValueError(f"The subcommand `{name}` is already registered.")
    COMMANDS[name] = Command(help, add_arguments, run)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXAMPLES = """examples:
  class-hf prepare --source bundled --out data/chebi20 --resplit 0.8,0.1,0.1
  class-hf evaluate --model runs/dual_encoder --data data/chebi20 --split test --pool all
  class-hf index --model runs/dual_encoder --molecules data/chebi20 --split test --texts --out indexes/test
  class-hf search --index indexes/test "The molecule is a monocarboxylic acid anion ..." -k 5
  class-hf push runs/demo --repo-id ORG/NAME --dry-run     # publish a trained run with its model card

`class-hf COMMAND --help` lists a command's options; --debug shows the traceback of an error."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (not for flags, required options or options without one); keeps line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.required or action.nargs == 0:
            return text
        if action.default is None or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)".strip()


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (no usage dump) that points to ``--help``."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        message = message.rstrip(".") + "."
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            close = difflib.get_close_matches(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)), n=1)
            if close:
                message += f" Did you mean {close[0]!r}?"
        self.exit(2, f"{self.prog}: error: {message} See `{self.prog} --help`.\n")


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """``--log-level`` and ``--debug``, accepted before and after the subcommand.

    After the subcommand (``suppress``) they have no default, so that they do not overwrite the value given before it.
    """
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS if suppress else "INFO",
        help="Logging level.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help=f"Show the full traceback of an error (also: {DEBUG_ENV}=1).",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``class-hf`` parser with every registered subcommand (builds in milliseconds: imports nothing heavy)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("class-hf")
    except PackageNotFoundError:  # a source checkout that was never installed
        __version__ = "unknown (not installed)"
    parser = Parser(
        prog="class-hf",
        description="CLASS curriculum training for text-molecule retrieval.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help, formatter_class=HelpFormatter)
        command.add_arguments(sub)
        _common_options(sub, suppress=True)
        sub.set_defaults(_run=command.run)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``class-hf``; returns the exit status.

    A user error (a missing or corrupt file, a bad value, a failed strict validation, a typo in an option) prints one
    line on stderr and exits with status 2 (:class:`~class_hf.user_errors.UserError`, a ``SystemExit``); ``--debug``
    or ``CLASS_HF_DEBUG=1`` shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = _subparser(parser, args.command)
        known = [option for action in sub._actions for option in action.option_strings]
        sub.error(unknown_arguments(extras, known))
    args.argv = argv  # recorded in dataset cards and reports
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with user_errors(f"class-hf {args.command}", debug=debug_requested(args.debug)):
        configure_cpu_threads()  # before torch starts: OMP_NUM_THREADS unless the user set it
        status = args._run(args)
    return 0 if status is None else int(status)


# ------------------------------------------------------------------------------------------------------------ helpers
def _split_of(data, split: str, what: str = "--split"):
    from datasets import DatasetDict

    if not isinstance(data, DatasetDict):
        return data
    if split not in data:
        raise SystemExit(f"{what} {split!r} is not in the data; its splits are {list(data)}.")
    return data[split]


def _check_out_folder(path: str, option: str = "--out") -> None:
    """Refuses, before any work, an output folder that is an existing file (it could only fail at the end)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise SystemExit(f"{option} {path!r} is an existing file, not a folder; give a folder to write into.")


def _check_hub_id(repo_id: str | None, option: str) -> None:
    """Refuses, before any work, a repository id that is not ``org/name`` (the push would fail at the end)."""
    from .data.sources import HUB_ID_PATTERN

    if repo_id is not None and not HUB_ID_PATTERN.match(repo_id):
        raise SystemExit(f"{option} {repo_id!r} is not a Hub repository id of the form org/name.")


def _check_device(device: str | None, option: str = "--device") -> None:
    """Refuses, before the model is loaded, a device torch does not know or this machine does not have."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        raise SystemExit(f"{option} {device!r} is not a torch device; use cpu, cuda, cuda:N or mps.") from None
    if kind == "cuda":
        index = torch.device(device).index
        if not torch.cuda.is_available():
            raise SystemExit(
                f"{option} {device!r}: this torch sees no CUDA GPU (torch.cuda.is_available() is False); use "
                f"{option} cpu."
            )
        if index is not None and index >= torch.cuda.device_count():
            raise SystemExit(
                f"{option} {device!r}: there is no CUDA device {index}; this machine has "
                f"{torch.cuda.device_count()} (cuda:0 to cuda:{torch.cuda.device_count() - 1})."
            )
    elif kind == "mps":
        if not torch.backends.mps.is_available():
            raise SystemExit(f"{option} {device!r}: MPS (Apple GPU) is not available here; use {option} cpu.")
    elif kind != "cpu":
        raise SystemExit(f"{option} {device!r}: class-hf encodes on cpu, cuda or mps, not {kind}.")


def _write_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ------------------------------------------------------------------------------------------------------------ prepare
def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="ChEBI-20 folder, file(s), Hub dataset id, or `bundled` (the 6,562 pairs shipped with class-hf); "
        "see docs/data.md.",
    )
    parser.add_argument("--out", required=True, help="Output folder (Dataset.save_to_disk).")
    parser.add_argument(
        "--resplit",
        default=None,
        help="Re-split all pairs by CID hash into train,validation,test fractions, e.g. 0.8,0.1,0.1.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of --resplit.")
    parser.add_argument("--num-proc", type=int, default=None, help="Worker processes for featurization.")
    parser.add_argument("--fingerprints", action="store_true", help="Also store sparse Morgan count fingerprints.")
    parser.add_argument("--strict", action="store_true", help="Fail on invalid rows instead of dropping them.")


def prepare(args: argparse.Namespace) -> int:
    """``class-hf prepare``: load and validate ChEBI-20, optionally re-split, featurize, ``save_to_disk``."""
    from .data.chebi20 import load_chebi20, resplit_by_cid
    from .data.features import MoleculeFeatures

    data = load_chebi20(args.source, strict=args.strict)
    if args.resplit:
        try:
            fractions = [float(v) for v in args.resplit.split(",")]
        except ValueError:
            raise SystemExit(
                f"--resplit must be comma-separated numbers such as 0.8,0.1,0.1, got {args.resplit!r}."
            ) from None
        data = resplit_by_cid(data, fractions, seed=args.seed)
    data = _without_empty_splits(data, args.source)
    data = MoleculeFeatures(fingerprints=args.fingerprints).featurize(data, num_proc=args.num_proc)
    data.save_to_disk(args.out)
    _check_saved(args.out, {split: len(part) for split, part in data.items()})
    logger.info("Saved %s to %s", {split: len(part) for split, part in data.items()}, args.out)
    return 0


def _without_empty_splits(data, source: str):
    """Leaves out (and says so) the splits a re-split left empty: ``save_to_disk`` writes them unreadable."""
    from datasets import DatasetDict

    empty = [split for split, part in data.items() if len(part) == 0]
    if empty:
        logger.warning("Leaving out the split(s) %s of %s: they hold no pairs.", empty, source)
    kept = DatasetDict({split: part for split, part in data.items() if len(part)})
    if not kept:
        raise ValueError(f"{source}: no split holds any pair; nothing to save.")
    return kept


def _check_saved(out: str, sizes: dict[str, int]) -> None:
    """What ``prepare`` wrote must load with ``datasets.load_from_disk`` (its success message promises that)."""
    from datasets import load_from_disk

    try:
        reloaded = {split: len(part) for split, part in load_from_disk(out).items()}
    except Exception as err:
        raise RuntimeError(f"{out} was written but does not load with datasets.load_from_disk: {err}") from err
    if reloaded != sizes:
        raise RuntimeError(f"{out} was written with the splits {sizes} but loads as {reloaded}.")


# ------------------------------------------------------------------------------------------------------------ score
def _score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="A `class-hf prepare` folder, ChEBI-20 files or a Hub id.")
    parser.add_argument(
        "--source",
        default="fingerprint",
        help="Scorer: fingerprint, warmup, or model:<path-or-hub-id> (a trained class-hf checkpoint).",
    )
    parser.add_argument(
        "--text-encoder",
        default=None,
        help="Text encoder (name or path) of the fingerprint scorer / warm-up backbone.",
    )
    parser.add_argument("--model", default=None, help="Backbone checkpoint to warm up (default: a dual encoder).")
    parser.add_argument("--out", required=True, help="Output folder (save_to_disk), with a README.md dataset card.")
    parser.add_argument("--split", default="train", help="The split to score.")
    parser.add_argument("--eval-split", default=None, help="Held-out split to report the scorer's MRR on.")
    parser.add_argument("--push-to-hub", default=None, metavar="ORG/NAME", help="Also push the result to the Hub.")
    parser.add_argument("--private", action="store_true", help="Make the pushed dataset private.")
    parser.add_argument("--delta", type=float, default=0.0, help="Margin of the confusion test.")
    parser.add_argument("--chunk-size", type=int, default=1024, help="Rows per similarity chunk.")
    parser.add_argument("--batch-size", type=int, default=64, help="Encoding and warm-up batch size.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the scorer's training and of cross-fitting.")
    parser.add_argument(
        "--warmup-fraction", type=float, default=0.25, help="--source warmup: share of the pairs the copy trains on."
    )
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="--source warmup: epochs of the warm-up.")
    parser.add_argument(
        "--warmup-learning-rate", type=float, default=1e-4, help="--source warmup: learning rate of the warm-up."
    )
    parser.add_argument("--fingerprint-max-epochs", type=int, default=200, help="Epoch cap of the fingerprint scorer.")
    parser.add_argument("--fingerprint-patience", type=int, default=10, help="Early-stopping patience (epochs).")
    parser.add_argument("--projection-dim", type=int, default=256, help="Shared space of the fingerprint scorer.")
    parser.add_argument(
        "--cross-fit-folds",
        type=int,
        default=5,
        help="Fingerprint scorer: score every pair with projections fitted on the other folds (0: in-sample).",
    )


def _backbone_for_warmup(args: argparse.Namespace):
    """The backbone the warm-up scorer copies: ``--model``, or a new default backbone around ``--text-encoder``."""
    from transformers import AutoModel

    from .models.registry import DEFAULT_BACKBONE, get_backbone, register_backbones

    if args.model:
        register_backbones()
        return AutoModel.from_pretrained(args.model)
    if not args.text_encoder:
        raise SystemExit("--source warmup needs --model (a backbone checkpoint) or --text-encoder.")
    return get_backbone(DEFAULT_BACKBONE).build(text_encoder_name_or_path=args.text_encoder)


def _tokenizer_for(args: argparse.Namespace):
    from transformers import AutoTokenizer

    from .data.sources import resolve_pretrained

    name = (
        args.text_encoder or args.model or (args.source.split(":", 1)[1] if args.source.startswith("model:") else None)
    )
    return AutoTokenizer.from_pretrained(resolve_pretrained(name)) if name else None


def score(args: argparse.Namespace) -> int:
    """``class-hf score``: adds the difficulty columns to one split and saves (and optionally pushes) the data."""
    from datasets import DatasetDict

    from .curriculum.difficulty import compute_difficulty
    from .data.sources import load_data
    from .hub import push_scored_dataset, save_scored_dataset, scored_dataset_card

    _check_out_folder(args.out)
    _check_hub_id(args.push_to_hub, "--push-to-hub")
    data = load_data(args.data)
    dataset = _split_of(data, args.split)
    eval_dataset = _split_of(data, args.eval_split, "--eval-split") if args.eval_split else None
    tokenizer = _tokenizer_for(args)
    model = None
    # A backbone scorer (warmup, model:) featurizes the pairs for itself: the columns its molecule tower reads.
    if args.source == "warmup":
        model = _backbone_for_warmup(args)
    elif args.source == "fingerprint" and not args.text_encoder:
        raise SystemExit("--source fingerprint needs --text-encoder (a Hub id or a local folder).")
    scored, info = compute_difficulty(
        dataset,
        args.source,
        model=model,
        tokenizer=tokenizer,
        text_encoder=args.text_encoder if args.source == "fingerprint" else None,
        seed=args.seed,
        delta=args.delta,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        warmup_fraction=args.warmup_fraction,
        warmup_epochs=args.warmup_epochs,
        warmup_learning_rate=args.warmup_learning_rate,
        eval_dataset=eval_dataset,
        fingerprint_kwargs={
            "max_epochs": args.fingerprint_max_epochs,
            "patience": args.fingerprint_patience,
            "projection_dim": args.projection_dim,
            "cross_fit_folds": args.cross_fit_folds,
        },
    )
    if isinstance(data, DatasetDict):
        data = DatasetDict({**data, args.split: scored})
    else:
        data = scored
    command = "class-hf " + " ".join(args.argv)
    scorer = args.model if args.source == "warmup" and args.model else None
    card = scored_dataset_card(info, split=args.split, command=command, source=args.data, scorer=scorer)
    save_scored_dataset(data, args.out, card)
    with open(os.path.join(args.out, "difficulty_info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, default=str)
    if args.push_to_hub:
        push_scored_dataset(data, args.push_to_hub, card, private=args.private)
    _write_json(info)
    return 0


# ------------------------------------------------------------------------------------------------------------ evaluate
def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A class-hf checkpoint (folder or Hub id).")
    parser.add_argument("--data", required=True, help="A `class-hf prepare` folder, ChEBI-20 files or a Hub id.")
    parser.add_argument("--split", default="test", help="The split to evaluate.")
    parser.add_argument(
        "--pool",
        choices=("split", "all"),
        default="split",
        help="Candidates: the split only (ORMA), or all molecules/texts of every split (Text2Mol, AMAN).",
    )
    parser.add_argument(
        "--pool-molecules",
        default=None,
        metavar="TSV",
        help="With --pool all: a CID/SMILES table (e.g. cid_split_smiles.tsv) of further candidate molecules.",
    )
    parser.add_argument("--tokenizer", default=None, help="Tokenizer (default: the checkpoint's).")
    parser.add_argument("--batch-size", type=int, default=64, help="Pairs encoded per forward pass.")
    parser.add_argument("--chunk-size", type=int, default=1024, help="Queries ranked at a time (bounds memory).")
    parser.add_argument("--output", default=None, help="Also write the metrics to this JSON file.")


def evaluate(args: argparse.Namespace) -> int:
    """``class-hf evaluate``: retrieval metrics of a checkpoint on one split, both directions, the chosen pool."""
    from datasets import DatasetDict

    from .data.chebi20 import load_chebi20_molecules
    from .data.features import MoleculeFeatures
    from .data.sources import load_data
    from .evaluation.evaluator import RetrievalEvaluator, metrics_by_pool
    from .models.registry import load_backbone

    start = time.perf_counter()
    model, tokenizer = load_backbone(args.model, tokenizer=args.tokenizer)
    data = load_data(args.data)
    dataset = _split_of(data, args.split)
    extras = None
    if args.pool == "all":
        extras = [part for name, part in data.items() if name != args.split] if isinstance(data, DatasetDict) else []
        if args.pool_molecules:
            extras.append(load_chebi20_molecules(args.pool_molecules))
        if not extras:
            raise SystemExit("--pool all needs other splits in --data or a --pool-molecules table.")
    elif args.pool_molecules:
        raise SystemExit("--pool-molecules only applies with --pool all.")
    evaluator = RetrievalEvaluator(
        dataset,
        data_collator=MoleculeFeatures.for_model(model).collator(tokenizer, model=model),
        extra_molecules=extras,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        show_progress=True,
    )
    metrics = metrics_by_pool(evaluator(model))[args.pool]
    sizes = evaluator.pool_sizes
    prefix = "all_" if args.pool == "all" else ""
    result = {
        "model": args.model,
        "split": args.split,
        "pool": args.pool,
        "num_queries": sizes["num_queries"],
        "num_candidate_molecules": sizes.get(f"{prefix}num_candidate_molecules", sizes["num_queries"]),
        "num_candidate_texts": sizes.get(f"{prefix}num_candidate_texts", sizes["num_queries"]),
        "seconds": time.perf_counter() - start,
        "metrics": {f"{args.split}_{args.pool}_{key}": value for key, value in metrics.items()},
    }
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    _write_json(result)
    return 0


register_command("prepare", "Load, validate, (re-split,) featurize and save ChEBI-20.", _prepare_arguments, prepare)
register_command("score", "Add CLASS difficulty columns to a split (save, optionally push).", _score_arguments, score)
register_command("evaluate", "Retrieval metrics of a checkpoint on a split.", _evaluate_arguments, evaluate)


# ------------------------------------------------------------------------------------------------------------ search
def _index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A class-hf checkpoint (folder or Hub id) to encode with.")
    parser.add_argument(
        "--molecules",
        required=True,
        help="The library: CSV/TSV/SDF/parquet file (a smiles column, optional cid/name/description), a "
        "`save_to_disk` folder, a ChEBI-20 folder, or 'bundled' (the 33,010 ChEBI-20 molecules of class-hf).",
    )
    parser.add_argument("--out", required=True, help="Output folder of the index.")
    parser.add_argument("--texts", action="store_true", help="Also index the descriptions (for --smiles searches).")
    parser.add_argument(
        "--split",
        default=None,
        help="Only this split: of a dataset with splits, or the rows of a file whose `split` column holds it (an "
        "error for a file without one).",
    )
    parser.add_argument("--tokenizer", default=None, help="Tokenizer (default: the checkpoint's).")
    parser.add_argument("--revision", default=None, help="Hub revision of --model.")
    parser.add_argument("--device", default=None, help="Device to encode on (default: CPU).")
    parser.add_argument("--batch-size", type=int, default=64, help="Molecules / texts encoded per forward pass.")
    parser.add_argument("--chunk-size", type=int, default=4096, help="Molecules featurized and encoded at a time.")
    parser.add_argument("--num-proc", type=int, default=None, help="Worker processes for featurization.")


def index_command(args: argparse.Namespace) -> int:
    """``class-hf index``: encode a molecule library into an index folder."""
    from .models.registry import load_backbone
    from .search.index import MoleculeIndex

    _check_out_folder(args.out)
    _check_device(args.device)
    model, tokenizer = load_backbone(args.model, revision=args.revision, tokenizer=args.tokenizer, device=args.device)
    index = MoleculeIndex.build(
        model,
        args.molecules,
        tokenizer,
        texts=args.texts,
        split=args.split,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        model_name_or_path=args.model,
        revision=args.revision,
        num_proc=args.num_proc,
    )
    index.save(args.out)
    keys = (
        "num_input_rows",
        "num_outside_split",
        "num_molecules",
        "num_texts",
        "num_skipped",
        "embedding_dim",
        "build_seconds",
    )
    _write_json({"index": args.out, **{key: index.info[key] for key in keys}})
    return 0


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", default=None, help="A description of the molecules to find.")
    parser.add_argument("--index", required=True, help="An index folder from `class-hf index`.")
    parser.add_argument("--smiles", default=None, help="Find descriptions of this molecule (needs --texts).")
    parser.add_argument("-k", "--top-k", dest="k", type=int, default=10, help="Number of results.")
    parser.add_argument("--truth-cid", default=None, help="CID of the known answer: highlighted, its rank reported.")
    parser.add_argument("--html", default=None, metavar="REPORT.html", help="Also write a page with structures.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    parser.add_argument("--model", default=None, help="Use this checkpoint instead of the one the index records.")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer (default: the model's).")


def search_command(args: argparse.Namespace) -> int:
    """``class-hf search``: top-k molecules for a description (or descriptions for ``--smiles``)."""
    from .models.registry import load_backbone
    from .search.index import MoleculeIndex
    from .search.report import format_table, render_search_html

    if (args.query is None) == (args.smiles is None):
        raise SystemExit('Give a description to search for ("...") or --smiles SMILES, not both and not neither.')
    model = tokenizer = None
    if args.model:
        model, tokenizer = load_backbone(args.model, tokenizer=args.tokenizer)
    index = MoleculeIndex.load(args.index, model=model, tokenizer=tokenizer)
    direction = "t2m" if args.smiles is None else "m2t"
    start = time.perf_counter()
    try:
        results, truth = index.search_with_truth(args.query, smiles=args.smiles, k=args.k, truth_cid=args.truth_cid)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    except OSError as err:  # the recorded model is not reachable from here
        raise SystemExit(f"{err} Pass the checkpoint with --model if it has moved.") from None
    seconds = time.perf_counter() - start
    query = args.query if direction == "t2m" else args.smiles
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render_search_html(query, results, direction=direction, truth=truth, info=index.info))
        logger.info("Wrote %s", args.html)
    if args.json:
        _write_json(
            {
                "query": query,
                "direction": direction,
                "k": args.k,
                "seconds": seconds,
                "results": [r.to_dict() for r in results],
                "truth": truth.to_dict() if truth is not None else None,
            }
        )
    else:
        sys.stdout.write(format_table(results, direction=direction, truth=truth))
    return 0


def _cases_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A class-hf checkpoint (folder or Hub id).")
    parser.add_argument("--data", required=True, help="A `class-hf prepare` folder, ChEBI-20 files or a Hub id.")
    parser.add_argument("--split", default="test", help="The labelled split whose pairs are the queries.")
    parser.add_argument("--n", type=int, default=10, help="Successes and failures to show (each).")
    parser.add_argument("-k", "--top-k", dest="k", type=int, default=3, help="Candidates shown per query.")
    parser.add_argument("--direction", choices=("t2m", "m2t"), default="t2m", help="text->molecule or molecule->text.")
    parser.add_argument(
        "--order",
        choices=("random", "margin"),
        default="random",
        help="Which successes: a seeded random sample, or those with the largest lead over the runner-up.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of --order random.")
    parser.add_argument("--html", default=None, metavar="CASES.html", help="Write the side-by-side page here.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer (default: the checkpoint's).")
    parser.add_argument("--batch-size", type=int, default=64, help="Pairs encoded per forward pass.")


def cases_command(args: argparse.Namespace) -> int:
    """``class-hf cases``: queries the model ranks first and those it fails, as text, JSON or an HTML page."""
    from .data.sources import load_data
    from .models.registry import load_backbone
    from .search.cases import find_cases, format_cases, render_cases_html

    model, tokenizer = load_backbone(args.model, tokenizer=args.tokenizer)
    dataset = _split_of(load_data(args.data), args.split)
    study = find_cases(
        model,
        dataset,
        tokenizer,
        n=args.n,
        k=args.k,
        direction=args.direction,
        success_order=args.order,
        seed=args.seed,
        batch_size=args.batch_size,
        model_name_or_path=args.model,
        split=args.split,
    )
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render_cases_html(study))
        logger.info("Wrote %s", args.html)
    if args.json:
        _write_json(study.to_dict())
    else:
        sys.stdout.write(format_cases(study))
    return 0


# ------------------------------------------------------------------------------------------------------------ push
def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="The output_dir of a trained recipe run (checkpoint and README.md model card).")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="The Hub model repository.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--dry-run", action="store_true", help="List what would be uploaded; upload nothing.")
    parser.add_argument("--card", default=None, metavar="PATH", help="Also write the uploaded model card here.")
    parser.add_argument("--message", default="CLASS checkpoint and model card (class-hf)", help="Commit message.")


def push_command(args: argparse.Namespace) -> int:
    """``class-hf push``: publish a trained run with its model card (needs a token: ``hf auth login``)."""
    from .hub import publish_run

    result = publish_run(
        args.run, args.repo_id, private=args.private, commit_message=args.message, dry_run=args.dry_run
    )
    if args.card:
        with open(args.card, "w", encoding="utf-8") as f:
            f.write(result["card"])
        logger.info("Wrote %s", args.card)
    _write_json({key: value for key, value in result.items() if key != "card"})
    return 0


register_command("index", "Encode a molecule library into a search index.", _index_arguments, index_command)
register_command("search", "Search an index with a description (or --smiles).", _search_arguments, search_command)
register_command("cases", "Successes and failures of a model on a labelled split.", _cases_arguments, cases_command)
register_command("push", "Publish a trained run with its model card on the Hub.", _push_arguments, push_command)


if __name__ == "__main__":
    sys.exit(main())
