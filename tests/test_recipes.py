"""The training recipes end to end on CPU: arguments, outputs, ``accelerate launch`` (1 and 2 processes, bf16), and
contrastive negatives gathered across ranks.

Per-rank sample coverage of the curriculum under two processes is tested in ``tests/test_distributed.py``; here the
two-process runs check that the recipes run unchanged under ``accelerate launch`` and agree on what they report.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from class_hf.curriculum.pacing import get_pacing, pool_sizes
from class_hf.recipe import COMMON_DEFAULTS, ModelArguments, build_model, check_launch, parse_recipe_args

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
# Shorter than the tiny configs: 2 epochs (one per stage), 96 training pairs, no per-epoch evaluation.
QUICK = [
    "--num_train_epochs", "2", "--pacing_stages", "2", "--max_train_samples", "96", "--eval_strategy", "no",
]  # fmt: skip


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "metrics.json").read_text())


# ----------------------------------------------------------------------------------------------------- arguments
def test_config_file_and_command_line_override_the_recipe_defaults(tmp_path):
    orma = _recipe("orma")
    assert orma.DEFAULTS == {  # ORMA's published settings
        "num_train_epochs": 60,
        "per_device_train_batch_size": 32,
        "learning_rate": 1e-4,
        "text_encoder_learning_rate": 3e-5,
        "weight_decay": 1e-4,
        "warmup_steps": 1000,
        "seed": 0,
    }
    config = tmp_path / "run.yaml"
    config.write_text(
        "dataset_name_or_path: some/data\n"
        "learning_rate: 5.0e-4\n"
        "num_train_epochs: 8\n"
        "resplit: [0.8, 0.1, 0.1]\n"
        "text_config: {model_type: bert, hidden_size: 16}\n"
        'save_strategy: "no"\n'
        "load_best_model_at_end: false\n"
        "curriculum: hard_first\n"
    )
    argv = ["--config", str(config), "--num_train_epochs", "12", "--model_config", '{"emb_dim": 8}']
    defaults = {**COMMON_DEFAULTS, **orma.DEFAULTS}
    model_args, data_args, args = parse_recipe_args([*argv, "--bf16", "--use_cpu"], defaults)
    assert args.learning_rate == 5e-4  # the file over the recipe
    assert args.num_train_epochs == 12  # the command line over the file
    assert args.weight_decay == 1e-4 and args.warmup_steps == 1000 and args.text_encoder_learning_rate == 3e-5
    assert args.eval_strategy == "epoch" and args.save_strategy == "no"
    assert args.curriculum.value == "hard_first" and args.bf16
    assert data_args.dataset_name_or_path == "some/data" and data_args.resplit == [0.8, 0.1, 0.1]
    assert model_args.text_config == {"model_type": "bert", "hidden_size": 16}  # a YAML mapping
    assert model_args.model_config == {"emb_dim": 8}  # a JSON object on the command line


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_bundled_config_parses_with_its_recipe(config):
    backbone = "dual_encoder" if config == "demo.yaml" else config.removesuffix(".yaml").removesuffix("_tiny")
    defaults = {**COMMON_DEFAULTS, **_recipe(backbone).DEFAULTS}
    extra = ["--use_cpu"] if "bf16: true" in (CONFIGS / config).read_text() else []  # bf16 on CPU needs it
    model_args, data_args, args = parse_recipe_args(["--config", str(CONFIGS / config), *extra], defaults)
    assert data_args.dataset_name_or_path and args.output_dir.startswith("runs/")
    if config == "demo.yaml":  # real bundled pairs, the pretrained MiniLM frozen and cached, the best epoch kept
        assert data_args.dataset_name_or_path == "bundled" and data_args.resplit == [0.8, 0.1, 0.1]
        assert model_args.text_encoder_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
        assert model_args.model_config["freeze_text_encoder"] and args.cache_text_features and model_args.linear_anchor
        assert args.load_best_model_at_end and args.metric_for_best_model == "eval_mrr"
    elif config.endswith("_tiny.yaml"):  # built from scratch on the bundled sample
        assert model_args.tokenizer_name_or_path == "wordlevel" and model_args.text_config["model_type"] == "bert"
        assert Path(ROOT / data_args.dataset_name_or_path).is_file()
    else:  # full runs start from the pretrained SciBERT and keep the best validation epoch, as the file says
        assert model_args.text_encoder_name_or_path == "allenai/scibert_scivocab_uncased"
        assert model_args.text_config is None and args.bf16
        text = (CONFIGS / config).read_text()
        assert "load_best_model_at_end: true" in text and "metric_for_best_model: eval_mrr" in text
        assert args.load_best_model_at_end and args.metric_for_best_model == "eval_mrr"


def test_bad_arguments_are_reported(tmp_path, monkeypatch, caplog):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rte: 1.0e-4\n")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['learning_rte'\]"):
        parse_recipe_args(["--config", str(config)])
    with pytest.raises(FileNotFoundError, match="no such file"):
        parse_recipe_args(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match="JSON object"):
        parse_recipe_args(["--model_config", "emb_dim=8"])
    with pytest.raises(ValueError, match="model_type"):
        parse_recipe_args(["--text_config", '{"hidden_size": 16}'])

    _, _, args = parse_recipe_args(["--output_dir", str(tmp_path), "--fp16", "--use_cpu"])
    with caplog.at_level(logging.WARNING, logger="class_hf.recipe"):
        check_launch(args)
    assert "fp16=True` on CPU silently runs in fp32" in caplog.text
    if not torch.cuda.is_available():
        _, _, args = parse_recipe_args(["--output_dir", str(tmp_path)])
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
        with pytest.raises(ValueError, match="--use_cpu"):
            check_launch(args)


# -------------------------------------------------------------------------------------------------- end to end
def test_dual_encoder_tiny_recipe_writes_checkpoint_metrics_scored_data_card_and_plots(tmp_path, monkeypatch):
    from datasets import load_from_disk
    from huggingface_hub import ModelCard
    from transformers import AutoModel, AutoTokenizer

    from class_hf.model_card import metrics_from_model_card
    from class_hf.models import DualEncoderModel

    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    results = _recipe("dual_encoder").main(
        ["--config", str(CONFIGS / "dual_encoder_tiny.yaml"), "--output_dir", str(out)]
    )
    assert results == json.loads((out / "metrics.json").read_text())
    assert results["data_sizes"] == {"train": 232, "validation": 37, "test": 31}
    for pool in ("split", "all"):
        test = results["test"][pool]
        for direction in ("t2m", "m2t"):
            assert 0 < test[f"{direction}_mrr"] <= 1
            assert 1 <= test[f"{direction}_mean_rank"] <= results["test_pool_sizes"]["all_num_candidate_molecules"]
    # The 'all' pool adds the other splits' 269 pairs: the true partner can only rank lower.
    assert results["test_pool_sizes"]["all_num_candidate_molecules"] == 300
    assert results["test"]["all"]["t2m_mean_rank"] >= results["test"]["split"]["t2m_mean_rank"]
    curriculum = results["curriculum"]
    assert curriculum["planned_sample_passes"] == 58 + 116 + 174 + 232 < curriculum["full_sample_passes"] == 4 * 232
    assert results["difficulty"]["source"] == "warmup"

    model = AutoModel.from_pretrained(out)  # save_pretrained + tokenizer
    assert isinstance(model, DualEncoderModel) and model.config.gnn_hidden_size == 32
    assert len(AutoTokenizer.from_pretrained(out)) == model.config.text_config.vocab_size

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "class-hf"
    assert metrics_from_model_card(card) == results["test"]  # exact floats through the YAML
    assert "recipes/dual_encoder.py --config" in card.text
    assert "pace_batch_size" in card.text and "batch_composition" in card.text  # every CLASS setting of the run

    scored = load_from_disk(out / "scored_dataset")
    train = scored["train"]
    assert {"n_confusing_t2m", "n_confusing_m2t", "difficulty"} <= set(train.column_names)
    assert "x" not in train.column_names and "sample_idx" not in train.column_names  # graphs are recomputable
    assert len(train) == 232 and all(0.0 <= d <= 1.0 for d in train["difficulty"])
    assert "warmup" in (out / "scored_dataset" / "README.md").read_text()

    for name in ("sample_ratio.png", "loss.png", "validation_mrr.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # The checkpoint evaluates to the same test metrics when loaded back (its own tokenizer, no training).
    again = _recipe("dual_encoder").main(
        ["--config", str(CONFIGS / "dual_encoder_tiny.yaml"), "--output_dir", str(tmp_path / "eval")]
        + ["--model_name_or_path", str(out), "--evaluate_only"]
    )
    assert again["evaluate_only"] is True and set(again["test"]) == {"split", "all"}
    for pool, metrics in results["test"].items():
        assert again["test"][pool] == pytest.approx(metrics, abs=1e-9), pool
    assert not (tmp_path / "eval" / "model.safetensors").exists()

    # A loaded checkpoint keeps its architecture and its backbone: mismatches are errors, not silent re-inits.
    tokenizer = AutoTokenizer.from_pretrained(out)
    with pytest.raises(ValueError, match="changes the architecture"):
        arguments = ModelArguments(model_name_or_path=str(out), model_config={"gnn_num_layers": 3})
        build_model(arguments, "dual_encoder", tokenizer)
    with pytest.raises(ValueError, match="is a 'class_dual_encoder' checkpoint"):
        build_model(ModelArguments(model_name_or_path=str(out)), "orma", tokenizer)


@pytest.mark.parametrize("backbone", ["orma", "aman"])
def test_orma_and_aman_tiny_recipes_run_end_to_end(backbone, tmp_path, monkeypatch):
    from transformers import AutoModel

    monkeypatch.chdir(ROOT)
    out = tmp_path / backbone
    results = _recipe(backbone).main(
        ["--config", str(CONFIGS / f"{backbone}_tiny.yaml"), "--output_dir", str(out), *QUICK]
    )
    assert results["model_type"] == f"class_{backbone}"
    assert set(results["test"]) == {"split", "all"}
    pools = pool_sizes(96, get_pacing("staged", num_stages=2, start_fraction=0.25), 2)
    assert pools[-1] == 96 and results["curriculum"]["samples_seen"] == sum(pools)  # two stages over 96 pairs
    assert AutoModel.from_pretrained(out).config.model_type == f"class_{backbone}"
    assert (out / "README.md").is_file() and (out / "scored_dataset").is_dir()


class _Killed(Exception):
    """Stands for a kill right after a checkpoint was written."""


def test_a_resumed_run_writes_what_an_uninterrupted_run_writes(tmp_path, monkeypatch):
    """``--resume_from_checkpoint`` after an interruption: the scored dataset, metrics, card, plots and weights of an
    uninterrupted run."""
    from datasets import load_from_disk
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from class_hf.recipe import run as recipe_run

    monkeypatch.chdir(ROOT)
    argv = ["--config", str(CONFIGS / "dual_encoder_tiny.yaml"), *QUICK, "--save_strategy", "epoch"]
    full = _recipe("dual_encoder").main([*argv, "--output_dir", str(tmp_path / "full")])

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, _args, state, _control, **kwargs):
            raise _Killed(f"checkpoint-{state.global_step}")

    class InterruptedTrainer(recipe_run.RecipeTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(KillAfterFirstCheckpoint())

    out = tmp_path / "resumed"
    monkeypatch.setattr(recipe_run, "RecipeTrainer", InterruptedTrainer)
    with pytest.raises(_Killed) as killed:
        _recipe("dual_encoder").main([*argv, "--output_dir", str(out)])
    monkeypatch.setattr(recipe_run, "RecipeTrainer", recipe_run.RecipeTrainer.__mro__[1])
    checkpoint = out / str(killed.value)
    assert (checkpoint / "model.safetensors").is_file() and not (out / "metrics.json").exists()
    resume = ["--output_dir", str(out), "--resume_from_checkpoint", str(checkpoint)]
    resumed = _recipe("dual_encoder").main([*argv, *resume])

    assert resumed["scored_dataset"] == str(out / "scored_dataset")  # was None before: the resumed part scored nothing
    assert full["scored_dataset"] == str(tmp_path / "full" / "scored_dataset")
    for split, part in load_from_disk(full["scored_dataset"]).items():
        again = load_from_disk(resumed["scored_dataset"])[split]
        assert part.column_names == again.column_names and part.to_dict() == again.to_dict(), split
    for pool, metrics in full["test"].items():
        assert resumed["test"][pool] == pytest.approx(metrics, abs=1e-6), pool
    counts = ("samples_seen", "optimizer_steps", "planned_sample_passes", "full_sample_passes", "num_epochs")
    assert {k: resumed["curriculum"][k] for k in counts} == {k: full["curriculum"][k] for k in counts}
    assert resumed["difficulty"]["source"] == full["difficulty"]["source"] == "warmup"
    assert [r["samples_seen"] for r in resumed["curriculum_history"]] == [
        r["samples_seen"] for r in full["curriculum_history"]
    ]
    assert sorted(Path(p).name for p in resumed["plots"]) == sorted(Path(p).name for p in full["plots"])
    assert (out / "README.md").is_file() and (out / "scored_dataset" / "README.md").is_file()
    weights, again = load_file(tmp_path / "full" / "model.safetensors"), load_file(out / "model.safetensors")
    for name, value in weights.items():
        assert torch.allclose(value, again[name], atol=1e-6), name


# ---------------------------------------------------------------------------------------------------- accelerate
def test_two_processes_with_gathered_negatives_run_the_dual_encoder_recipe_unchanged(tmp_path):
    out = tmp_path / "ddp"
    launch = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    recipe = ["recipes/dual_encoder.py", "--config", str(CONFIGS / "dual_encoder_tiny.yaml")]
    proc = _run([*ACCELERATE, *launch, *recipe, "--output_dir", str(out), "--use_cpu", "--gather_across_ranks"])
    results = _metrics(out)
    assert results["num_processes"] == 2
    assert proc.stdout.count("test metrics (") == 1  # only the main process evaluates and prints
    # Each rank trains on its share of every epoch's pool; padding to whole global batches can only add passes.
    curriculum = results["curriculum"]
    assert curriculum["planned_sample_passes"] <= curriculum["samples_seen"] < curriculum["full_sample_passes"]
    assert results["command"].startswith("accelerate launch --multi_gpu --num_processes 2 recipes/dual_encoder.py")
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


def test_single_process_accelerate_launch_with_bf16_on_cpu(tmp_path):
    out = tmp_path / "bf16"
    launch = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no"]
    recipe = ["recipes/dual_encoder.py", "--config", str(CONFIGS / "dual_encoder_tiny.yaml"), *QUICK]
    _run([*ACCELERATE, *launch, *recipe, "--output_dir", str(out), "--use_cpu", "--bf16"])
    results = _metrics(out)
    assert results["mixed_precision"] == "bf16" and results["num_processes"] == 1
    assert results["train"]["train_loss"] > 0 and set(results["test"]) == {"split", "all"}


@pytest.mark.slow
def test_two_processes_run_the_orma_tiny_recipe(tmp_path):
    out = tmp_path / "orma_ddp"
    launch = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    recipe = ["recipes/orma.py", "--config", str(CONFIGS / "orma_tiny.yaml")]
    _run([*ACCELERATE, *launch, *recipe, "--output_dir", str(out), "--use_cpu"], timeout=600)
    results = _metrics(out)
    assert results["num_processes"] == 2 and results["model_type"] == "class_orma"
    assert set(results["test"]) == {"split", "all"}


def test_gathered_negatives_give_the_single_process_loss_and_gradients(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port()), "tests/scripts/gathered_loss.py", str(tmp_path)]
    _run(command)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for backbone in ("dual_encoder", "orma", "aman"):
        first, second = ranks[0][backbone], ranks[1][backbone]
        reference = first["reference_loss"]
        assert second["reference_loss"] == pytest.approx(reference, rel=1e-6)
        assert first["gathered_loss_mean_over_ranks"] == pytest.approx(reference, rel=1e-5), backbone
        # Each rank's per-sample losses are the reference's for its half of the global batch.
        assert first["gathered_per_sample"] == pytest.approx(first["reference_per_sample"][:4], rel=1e-5)
        assert second["gathered_per_sample"] == pytest.approx(first["reference_per_sample"][4:], rel=1e-5)
        assert first["missing_grads"] == [] and first["num_grads"] > 0
        assert first["max_grad_diff"] <= 1e-4 * max(1.0, first["max_grad"]), backbone
        # Without gathering each rank sees only its own negatives: a different loss.
        assert abs(first["local_only_loss_mean_over_ranks"] - reference) > 1e-3, backbone
        # Gradient caching of the text encoder composes with the gathered negatives: the same loss and gradients.
        for rank, half in ((first, slice(0, 4)), (second, slice(4, 8))):
            assert rank["cached_chunked"] is True, backbone
            assert rank["cached_per_sample"] == pytest.approx(first["reference_per_sample"][half], rel=1e-5), backbone
        assert first["cached_loss_mean_over_ranks"] == pytest.approx(reference, rel=1e-5), backbone
        assert first["cached_missing_grads"] == [], backbone
        assert first["cached_max_grad_diff"] <= 1e-4 * max(1.0, first["max_grad"]), backbone


# ------------------------------------------------------------------------------------------ outputs and Ctrl-C
def test_a_recipe_refuses_to_overwrite_an_earlier_run(tmp_path, monkeypatch, capsys):
    from class_hf.recipe.run import check_output_dir

    out = tmp_path / "run"
    (out / "checkpoint-8").mkdir(parents=True)
    (out / "checkpoint-8" / "trainer_state.json").write_text("{}")
    (out / "metrics.json").write_text("{}")
    _, _, args = parse_recipe_args(["--output_dir", str(out)])
    with pytest.raises(ValueError, match=r"already holds an earlier run \(checkpoint-8, metrics.json\); pass "):
        check_output_dir(args)
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint {out / 'checkpoint-8'} to continue it"):
        check_output_dir(args)
    _, _, resuming = parse_recipe_args(
        ["--output_dir", str(out), "--resume_from_checkpoint", str(out / "checkpoint-8")]
    )
    check_output_dir(resuming)  # resuming writes into its own folder
    _, _, overwriting = parse_recipe_args(["--output_dir", str(out), "--overwrite_output_dir"])
    check_output_dir(overwriting)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]  # stale checkpoints removed, files overwritten

    # Through the recipe: one line on stderr, exit status 2, nothing trained.
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_:
        _recipe("dual_encoder").main(["--config", str(CONFIGS / "dual_encoder_tiny.yaml"), "--output_dir", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite_output_dir" in err[0] and str(out) in err[0]


def test_ctrl_c_says_where_the_last_checkpoint_is_and_how_to_resume(tmp_path, monkeypatch, capsys):
    from class_hf.recipe import run as recipe_run

    out = tmp_path / "run"
    argv = ["--config", "recipes/configs/demo.yaml", "--output_dir", str(out), "--overwrite_output_dir"]

    def interrupted(*_args, **_kwargs):
        for step in (4, 8):
            (out / f"checkpoint-{step}").mkdir(parents=True)
            (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
        (out / "checkpoint-12").mkdir()  # being written when Ctrl-C came: incomplete, not offered
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe_run, "train_and_evaluate", interrupted)
    monkeypatch.setattr(recipe_run, "configure_cpu_threads", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        recipe_run.run_recipe("dual_encoder", argv=argv)
    assert exit_.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    checkpoint = out / "checkpoint-8"
    assert err == [
        f"recipes/dual_encoder.py: error: interrupted (Ctrl-C); the last checkpoint is {checkpoint}; resume with: "
        f"python recipes/dual_encoder.py --config recipes/configs/demo.yaml --output_dir {out} "
        f"--resume_from_checkpoint {checkpoint}"
    ]

    def interrupted_early(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe_run, "train_and_evaluate", interrupted_early)
    with pytest.raises(SystemExit):
        argv = ["--output_dir", str(tmp_path / "new"), "--save_strategy", "no", "--load_best_model_at_end", "false"]
        recipe_run.run_recipe("dual_encoder", argv=argv)
    err = capsys.readouterr().err
    assert "before the first checkpoint (save_strategy=no); start again with: python recipes/dual_encoder.py " in err
    assert err.rstrip().endswith("--overwrite_output_dir")


def test_cached_text_features_and_the_linear_anchor_in_a_recipe(tmp_path, monkeypatch, capsys):
    """A frozen text encoder: every split's features cached once (reloaded by a second run), the linear anchor fitted
    on the same split and reported next to the model in the summary, metrics.json and the model card."""
    from datasets import load_from_disk

    from class_hf.data.text_features import TEXT_FEATURES_COLUMN

    monkeypatch.chdir(ROOT)
    model_config = (
        '{"gnn_hidden_size": 32, "gnn_num_layers": 2, "projection_dim": 32, "use_fingerprint": true, '
        '"fingerprint_fusion": "output", "pooling": "mean", "text_pooling_layers": 2, "freeze_text_encoder": true}'
    )
    out = tmp_path / "frozen"
    argv = ["--config", str(CONFIGS / "dual_encoder_tiny.yaml"), *QUICK, "--model_config", model_config]
    argv += ["--cache_text_features", "--linear_anchor", "--output_dir", str(out)]
    results = _recipe("dual_encoder").main(argv)
    anchor = results["linear_anchor"]
    assert anchor["fit"]["text_features"] == "cached (last layer)"
    assert set(anchor["test"]) == set(results["test"]) == {"split", "all"}
    assert 0 < anchor["test"]["split"]["t2m_mrr"] <= 1 and 0 < anchor["test"]["all"]["m2t_mrr"] <= 1
    printed = capsys.readouterr().out
    assert "dual_encoder: 1 process, mixed precision: no" in printed
    rows = [line.split() for line in printed.splitlines() if line.startswith(("split ", "all "))]
    assert [row[:2] for row in rows] == [["split", "dual_encoder"], ["split", "linear"], ["all", "dual_encoder"],
                                         ["all", "linear"]]  # fmt: skip
    assert float(rows[1][3]) == pytest.approx(anchor["test"]["split"]["t2m_mrr"], abs=1e-4)
    card = (out / "README.md").read_text()
    assert "### The linear anchor on the same split" in card and "`text_encoder` | frozen" in card
    assert "text_encoder_learning_rate" not in card  # the recipe's default rate is not used with a frozen encoder
    assert TEXT_FEATURES_COLUMN not in load_from_disk(out / "scored_dataset")["train"].column_names

    # A second run reloads every split's features from the datasets cache instead of encoding the texts again.
    again = tmp_path / "again"
    with monkeypatch.context() as patched:
        from class_hf.data import text_features

        def no_encoding(*_args, **_kwargs):
            raise AssertionError("the texts were encoded again")

        patched.setattr(text_features, "_encode_batch", no_encoding)
        rerun = _recipe("dual_encoder").main([*argv[:-1], str(again)])
    assert rerun["test"]["split"] == pytest.approx(results["test"]["split"], abs=1e-6)
