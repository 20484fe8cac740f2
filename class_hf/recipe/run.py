"""One recipe run, start to end: :class:`RecipeRun` (the run's context) and :func:`train_and_evaluate`."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.features import MoleculeFeatures
from ..data.text_features import cache_text_features
from ..models.registry import get_backbone
from ..runtime import configure_cpu_threads
from ..training_args import CurriculumTrainingArguments
from ..user_errors import debug_requested, user_errors
from .arguments import COMMON_DEFAULTS, DataArguments, ModelArguments, parse_recipe_args
from .building import build_model, build_tokenizer, featurize, load_pairs
from .outputs import (
    RecipeTrainer,
    dataset_id,
    format_summary,
    run_report,
    scored_dataset_of,
    write_metrics,
    write_plots,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RecipeRun",
    "check_launch",
    "check_output_dir",
    "interrupted_message",
    "last_checkpoint",
    "run_recipe",
    "train_and_evaluate",
]


@dataclass
class RecipeRun:
    """Everything one recipe run knows, handed from step to step instead of long argument lists.

    Args:
        backbone (str): the recipe's backbone (a name of :data:`~class_hf.models.registry.BACKBONES`).
        model_args (ModelArguments): the model arguments.
        data_args (DataArguments): the data arguments.
        training_args (CurriculumTrainingArguments): the training arguments.
        command (str): the command line, recorded in the model and dataset cards and in ``metrics.json``.

    Attributes:
        started (float): ``time.perf_counter()`` when the run began.
        data (DatasetDict | None): the featurized splits, once loaded.
        tokenizer: the tokenizer, once built.
        model (torch.nn.Module | None): the model, once built.
        collator: the batch collator, once built.
    """

    backbone: str
    model_args: ModelArguments
    data_args: DataArguments
    training_args: CurriculumTrainingArguments
    command: str
    started: float = field(default_factory=time.perf_counter)
    data: Any = None
    tokenizer: Any = None
    model: torch.nn.Module | None = None
    collator: Any = None

    def build(self) -> None:
        """Data, tokenizer, model, molecule columns, collator and cached text features, in that order (the seed set
        first)."""
        from transformers import set_seed

        model_args, data_args, training_args = self.model_args, self.data_args, self.training_args
        # 1. Seed first: the new model's weights and the warm-up scorer follow it.
        set_seed(training_args.seed)
        # 2. Data (ChEBI-20 from a path or the Hub, optional re-split by CID).
        data = load_pairs(data_args)
        # 3. Tokenizer and model.
        self.tokenizer = build_tokenizer(model_args, self.backbone, data[data_args.train_split]["description"])
        self.model = build_model(model_args, self.backbone, self.tokenizer)
        # 4. The molecule columns the model reads, rank 0 first (the others read the datasets cache).
        features = MoleculeFeatures.for_model(self.model, fingerprints=data_args.fingerprints)
        self.data = featurize(data, training_args, features, num_proc=data_args.preprocessing_num_workers)
        self.collator = features.collator(self.tokenizer, max_length=model_args.max_length, model=self.model)
        # 5. With a frozen text encoder: its features of every split, once (the datasets cache keeps them for reruns);
        # training, evaluation, difficulty scoring and the test pools then read them instead of running the encoder.
        if training_args.cache_text_features:
            with training_args.main_process_first(desc="caching text features"):
                (self.data,) = cache_text_features(
                    self.model, self.tokenizer, self.collator, self.data,
                    batch_size=training_args.per_device_eval_batch_size,
                )  # fmt: skip

    def evaluation_split(self):
        """The split evaluated during training (None when absent); an error when ``eval_strategy`` needs it."""
        eval_dataset = self.data.get(self.data_args.validation_split)
        if eval_dataset is None and self.training_args.eval_strategy != "no":
            raise ValueError(
                f"`eval_strategy={self.training_args.eval_strategy.value!r}` needs the "
                f"{self.data_args.validation_split!r} split, but the data has {list(self.data)}. Set "
                "`validation_split`, `--resplit 0.8 0.1 0.1`, or `--eval_strategy no`."
            )
        return eval_dataset


def check_launch(training_args: CurriculumTrainingArguments) -> None:
    """Fails early on a multi-process CPU launch without ``use_cpu``, warns when fp16 would run in fp32 on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cpu = training_args.use_cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if world > 1 and not torch.cuda.is_available() and not use_cpu:
        raise ValueError(
            f"{world} processes were launched on a machine without a GPU, but `use_cpu` is off: every process would "
            "train alone on all the data. Add `--use_cpu` (and never `accelerate launch --cpu` with "
            "--num_processes: it starts a single process)."
        )
    if training_args.fp16 and training_args.device.type == "cpu":
        logger.warning(
            "`fp16=True` on CPU silently runs in fp32 (no CPU autocast for float16); use `--bf16` for mixed precision "
            "on CPU."
        )


def _command(backbone: str, argv: Sequence[str]) -> str:
    """The run's command line, with the launcher told apart by the environment it sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "ACCELERATE_MIXED_PRECISION" in os.environ:  # set by `accelerate launch`
        launcher = "accelerate launch" + (f" --multi_gpu --num_processes {world}" if world > 1 else "")
    elif "TORCHELASTIC_RUN_ID" in os.environ:
        launcher = f"torchrun --nproc_per_node {world}"
    else:
        launcher = "python"
    return " ".join([launcher, f"recipes/{backbone}.py", *(shlex.quote(a) for a in argv)])


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder of ``output_dir`` (one holding ``trainer_state.json``)."""
    import re

    if not os.path.isdir(output_dir):
        return None
    steps = {}
    for name in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", name)
        if match and os.path.isfile(os.path.join(output_dir, name, "trainer_state.json")):
            steps[int(match.group(1))] = os.path.join(output_dir, name)
    return steps[max(steps)] if steps else None


def check_output_dir(training_args: CurriculumTrainingArguments) -> None:
    """Refuses to write over an earlier run in ``output_dir`` unless ``--overwrite_output_dir`` or resuming.

    With ``--overwrite_output_dir`` the earlier ``checkpoint-*`` folders are removed (on the main process), so that
    neither resuming nor ``load_best_model_at_end`` can pick one of them up; the other files are overwritten.

    Raises:
        ValueError: ``output_dir`` exists and is not empty, and the run neither overwrites nor resumes.
    """
    import shutil

    out = training_args.output_dir
    if not os.path.isdir(out) or not os.listdir(out) or training_args.resume_from_checkpoint:
        return
    if not training_args.overwrite_output_dir:
        checkpoint = last_checkpoint(out)
        resume = f", --resume_from_checkpoint {checkpoint} to continue it" if checkpoint else ""
        raise ValueError(
            f"output_dir {out!r} already holds an earlier run ({', '.join(sorted(os.listdir(out))[:4])}"
            f"{', ...' if len(os.listdir(out)) > 4 else ''}); pass --overwrite_output_dir to replace it{resume}, or "
            "choose another --output_dir."
        )
    if training_args.process_index == 0:
        stale = sorted(name for name in os.listdir(out) if name.startswith("checkpoint-"))
        for name in stale:
            shutil.rmtree(os.path.join(out, name))
        logger.info(
            "--overwrite_output_dir: writing over the run in %s%s.", out, f" (removed {stale})" if stale else ""
        )


def interrupted_message(backbone: str, argv: Sequence[str], training_args: CurriculumTrainingArguments) -> str:
    """What Ctrl-C during a recipe says: where the last checkpoint is and the exact command that resumes from it."""
    kept, skip = [], False
    for arg in argv:  # the command again, without an earlier --resume_from_checkpoint / --overwrite_output_dir
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name == "--resume_from_checkpoint":
            skip = "=" not in arg
            continue
        if name != "--overwrite_output_dir":
            kept.append(arg)
    checkpoint = last_checkpoint(training_args.output_dir)
    if checkpoint is None:
        strategy = getattr(training_args.save_strategy, "value", training_args.save_strategy)
        return (
            f"interrupted (Ctrl-C) before the first checkpoint (save_strategy={strategy}); start again with: "
            f"{_command(backbone, [*kept, '--overwrite_output_dir'])}"
        )
    return (
        f"interrupted (Ctrl-C); the last checkpoint is {checkpoint}; resume with: "
        f"{_command(backbone, [*kept, '--resume_from_checkpoint', checkpoint])}"
    )


def _setup_logging(training_args: CurriculumTrainingArguments) -> None:
    import datasets
    import transformers

    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("class_hf").setLevel(level)
    process_level = training_args.get_process_log_level()
    transformers.utils.logging.set_verbosity(process_level)
    datasets.utils.logging.set_verbosity(max(process_level, logging.WARNING))
    if training_args.disable_tqdm:  # no bars from transformers either ("Writing model shards" at every checkpoint)
        transformers.utils.logging.disable_progress_bar()


def _evaluate_only(run: RecipeRun) -> dict[str, Any] | None:
    """``--evaluate_only``: the test metrics of the model in both pools, on the main process, into metrics.json."""
    if run.training_args.process_index != 0:
        return None
    model = run.model.to(run.training_args.device)
    results = run_report(run, model)
    results["evaluate_only"] = True
    write_metrics(run, results)
    return results


def _data_description(run: RecipeRun) -> str:
    """Where the run's pairs come from and how they were split, in a sentence for the model card."""
    from ..data.chebi20 import BUNDLED

    data_args = run.data_args
    source = data_args.dataset_name_or_path
    if source == BUNDLED:
        text = (
            "the ChEBI-20 validation and test pairs bundled with class-hf (CC BY 4.0; ChEBI-20's own train split is "
            "not among them, so these numbers do not compare with results trained on it)"
        )
    else:
        text = f"ChEBI-20 pairs from `{source}`"
    if data_args.resplit:
        shares = "/".join(f"{fraction:.0%}" for fraction in data_args.resplit)
        text += f", re-split {shares} into train/validation/test by CID hash (seed {data_args.resplit_seed})"
    return text[0].upper() + text[1:] + ";"


def _pool_description(run: RecipeRun, results: Mapping[str, Any]) -> str | None:
    from ..data.chebi20 import BUNDLED

    pool = run.data_args.pool_molecules
    if pool is None:
        return None
    size = (results.get("test_pool_sizes") or {}).get("all_num_candidate_molecules")
    total = f", {size:,} candidate molecules in all" if size else ""
    return f"the ChEBI-20 molecule table bundled with class-hf{total}" if pool == BUNDLED else f"`{pool}`{total}"


def _checkpoint_selection(trainer: Any) -> str:
    """Which weights the saved model holds: the best validation epoch's (``load_best_model_at_end``) or the last."""
    args, state = trainer.args, trainer.state
    epochs = trainer.num_epochs if hasattr(trainer, "num_epochs") else args.num_train_epochs
    if args.load_best_model_at_end and state.best_metric is not None and args.metric_for_best_model:
        key = (
            args.metric_for_best_model
            if args.metric_for_best_model.startswith("eval_")
            else "eval_" + (args.metric_for_best_model)
        )
        best = [h for h in state.log_history if h.get(key) == state.best_metric]
        at = round(best[0]["epoch"]) if best and "epoch" in best[0] else None
        epoch = f"epoch {at} of {epochs}" if at is not None else "the best epoch"
        last = " (the last one)" if at == epochs else ""
        return (
            f"The checkpoint holds the weights of the best validation evaluation: {epoch}{last}, `{key}` = "
            f"{state.best_metric:.4f}, chosen with `load_best_model_at_end`."
        )
    return f"The checkpoint holds the weights after the last of {epochs} epochs."


def _card_kwargs(run: RecipeRun, trainer: Any, model: torch.nn.Module, results: Mapping[str, Any]) -> dict[str, Any]:
    """What the model card of the run says beyond what it reads from the trainer."""
    model_args, data_args, training_args = run.model_args, run.data_args, run.training_args
    anchor = results.get("linear_anchor")
    return {
        "data_description": _data_description(run),
        "anchor_metrics": anchor["test"] if anchor else None,
        "checkpoint_selection": _checkpoint_selection(trainer),
        "test_metrics": results["test"],
        "model_id": training_args.hub_model_id if training_args.push_to_hub else training_args.output_dir,
        "base_model": model_args.model_name_or_path or getattr(model.config, "text_encoder_name_or_path", None),
        "dataset_id": dataset_id(run),
        "dataset_name": f"ChEBI-20 ({data_args.dataset_name_or_path})",
        "split": data_args.test_split,
        "num_test_pairs": results["test_pool_sizes"].get("num_queries"),
        "data_sizes": results["data_sizes"],
        "pool_molecules": _pool_description(run, results),
        "recipe_command": run.command,
    }


def train_and_evaluate(
    backbone: str,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: CurriculumTrainingArguments,
    command: str | None = None,
) -> dict[str, Any] | None:
    """Runs the recipe (see :mod:`class_hf.recipe`) and returns its results on the main process (None elsewhere).

    Args:
        backbone (str): ``dual_encoder``, ``orma`` or ``aman``.
        model_args (ModelArguments): the model arguments.
        data_args (DataArguments): the data arguments.
        training_args (CurriculumTrainingArguments): the training arguments.
        command (str | None): the command line, recorded in the model and dataset cards.

    Returns:
        dict | None: what ``metrics.json`` holds.
    """
    get_backbone(backbone)  # an unknown name fails before anything runs
    check_launch(training_args)
    with training_args.main_process_first(desc="checking output_dir"):
        check_output_dir(training_args)  # an earlier run is never overwritten silently
    _setup_logging(training_args)
    run = RecipeRun(backbone, model_args, data_args, training_args, command or _command(backbone, sys.argv[1:]))
    run.build()
    train_dataset = run.data[data_args.train_split]
    if training_args.difficulty_column in train_dataset.column_names:
        logger.info(
            "The training split carries the difficulty column `%s`: it is used as it is (no scoring).",
            training_args.difficulty_column,
        )
    eval_dataset = run.evaluation_split()
    if model_args.evaluate_only:
        return _evaluate_only(run)
    # 5. The CLASS trainer: scores the difficulty if needed (difficulty_source), then trains.
    trainer = RecipeTrainer(
        model=run.model,
        args=training_args,
        data_collator=run.collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=run.tokenizer,
    )
    trainer.run = run
    train_start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_wall = time.perf_counter() - train_start
    trainer.save_state()
    # 6. Test metrics in both pools, on the main process (every rank holds the same weights).
    results: dict[str, Any] | None = None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_world_process_zero():
        results = run_report(run, model)
        results.update(
            {
                "train": train_result.metrics,
                "curriculum": trainer.curriculum_summary(),
                "curriculum_history": trainer.curriculum_history,
                "difficulty": trainer.scoring_info
                or {"source": "precomputed column" if trainer.difficulty is not None else None},
                "seconds": {"train_wall": train_wall},
                "scored_dataset": scored_dataset_of(run, trainer),
                "plots": write_plots(run, trainer),
            }
        )
        if results["test"]:
            trainer.card_kwargs = _card_kwargs(run, trainer, model, results)
        write_metrics(run, results)
    # 7. Checkpoint (+ tokenizer) and model card; pushed to the Hub with --push_to_hub. All ranks take part.
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="CLASS training run (class-hf recipe)")
    else:
        trainer.save_model()
        if trainer.card_kwargs is not None:
            trainer.create_model_card()
    trainer.accelerator.wait_for_everyone()
    return results


def run_recipe(
    backbone: str,
    defaults: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    report: Callable[[str], Any] | None = None,
) -> dict[str, Any] | None:
    """Parses the arguments (``defaults`` < ``--config`` < command line) and runs :func:`train_and_evaluate`.

    Args:
        backbone (str): ``dual_encoder``, ``orma`` or ``aman``.
        defaults (Mapping | None): the recipe's default argument values, over :data:`COMMON_DEFAULTS`.
        argv (Sequence[str] | None): the arguments (``sys.argv[1:]`` when None).
        report (Callable | None): called on the main process with :func:`format_summary` of the results (the
            recipes pass ``print``; the library itself never prints).

    Returns:
        dict | None: the results on the main process (None elsewhere).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested("--debug" in argv)
    argv = [arg for arg in argv if arg != "--debug"]
    defaults = {**COMMON_DEFAULTS, "output_dir": f"runs/{backbone}", **(defaults or {})}
    # A user error (unknown YAML key, bad value, missing data) is one line and exit status 2; --debug: traceback.
    with user_errors(f"recipes/{backbone}.py", debug=debug):
        configure_cpu_threads()  # class-hf's CPU thread default, unless OMP_NUM_THREADS or torch's is set
        model_args, data_args, training_args = parse_recipe_args(argv, defaults)
        try:
            results = train_and_evaluate(
                backbone, model_args, data_args, training_args, command=_command(backbone, argv)
            )
        except KeyboardInterrupt:  # one line: where the last checkpoint is and how to resume from it
            raise KeyboardInterrupt(interrupted_message(backbone, argv, training_args)) from None
    if results is not None and report is not None:
        report(format_summary(results))
    _end_distributed()
    return results


def _end_distributed() -> None:
    """Tears down the process group a multi-process launch created, once every rank is done.

    Leaving it to interpreter exit intermittently aborted a gloo rank after a finished run ("terminate called
    without an active exception").
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
