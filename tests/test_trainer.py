"""CurriculumTrainer end to end on CPU with a user's own tiny backbone (the acceptance test of the backbone contract).

``TinyBackbone`` below is written only against the contract in CONTRIBUTING.md (no class_hf model code): ``forward``
returns ``loss``/``per_sample_loss``/embeddings, plus ``encode_text``, ``encode_molecule`` and ``score``. It trains
under CLASS unchanged. ``tests/scripts/ddp_train.py`` imports the same pieces for the two-process test.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from datasets import Dataset
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_mean_pool
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from class_hf.curriculum.intensity import IntensityTarget
from class_hf.curriculum.pacing import get_pacing, planned_optimizer_steps, planned_sample_passes, pool_sizes
from class_hf.curriculum.provider import DIFFICULTY_FILE, STATE_FILE
from class_hf.curriculum.pruning import PRUNING_FILE
from class_hf.curriculum.sampler import CurriculumOrder
from class_hf.models.losses import contrastive_loss
from class_hf.models.outputs import RetrievalOutput
from class_hf.trainer import CurriculumTrainer
from class_hf.training_args import CurriculumTrainingArguments

VOCAB, ATOM_TYPES, DIM = 40, 10, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscription on a shared 2-core machine (10x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ a user's own backbone
class TinyBackbone(nn.Module):
    """Bag-of-tokens text tower and bag-of-atoms molecule tower, symmetric InfoNCE per pair.

    ``aux_weight`` adds a batch-level term (a modality-gap penalty) to ``loss`` beyond the per-sample mean, like an
    adversarial loss would.
    """

    supports_intensity = True

    def __init__(self, aux_weight: float = 0.0) -> None:
        super().__init__()
        self.text_encoder = nn.ModuleDict({"embed": nn.Embedding(VOCAB, DIM)})
        self.text_proj = nn.Linear(DIM, DIM)
        self.atom_embed = nn.Embedding(ATOM_TYPES, DIM)
        self.mol_proj = nn.Linear(DIM, DIM)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.aux_weight = aux_weight
        self.gather_across_ranks = False
        self.seen_intensity: list[float | None] = []

    def encode_text(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.text_encoder["embed"](input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def encode_molecule(self, graph):
        graph = graph.to(self.logit_scale.device)
        pooled = global_mean_pool(self.atom_embed(graph.x.view(-1)), graph.batch, size=graph.num_graphs)
        return F.normalize(self.mol_proj(pooled), dim=-1)

    def score(self, text_embeds, mol_embeds):
        return text_embeds @ mol_embeds.T

    def forward(self, input_ids, attention_mask, graph, intensity=None, **kwargs):
        self.seen_intensity.append(intensity)
        text, mol = self.encode_text(input_ids, attention_mask), self.encode_molecule(graph)
        scale = self.logit_scale.exp() * (1.0 if intensity is None else intensity)
        losses = contrastive_loss(text, mol, scale, gather_across_ranks=self.gather_across_ranks)
        per_sample = losses["per_sample_loss"]
        loss = per_sample.mean()
        if self.aux_weight:
            loss = loss + self.aux_weight * (text.mean(0) - mol.mean(0)).pow(2).sum()
        return RetrievalOutput(
            loss=loss,
            per_sample_loss=per_sample,
            text_embeds=text,
            mol_embeds=mol,
            loss_components={"t2m": losses["t2m"].mean().detach(), "m2t": losses["m2t"].mean().detach()},
        )


@dataclass
class TinyCollator:
    """rows -> {input_ids, attention_mask, graph, sample_idx, difficulty}; records the columns it was given."""

    columns: tuple[str, ...] = ("input_ids", "atoms", "sample_idx", "difficulty")
    seen_columns: set = field(default_factory=set)

    def __call__(self, rows):
        self.seen_columns.update(rows[0].keys())
        length = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        graphs = [
            Data(x=torch.tensor(r["atoms"]).view(-1, 1), edge_index=torch.empty(2, 0, dtype=torch.long)) for r in rows
        ]
        batch = {"input_ids": ids, "attention_mask": mask, "graph": Batch.from_data_list(graphs)}
        if "sample_idx" in rows[0]:
            batch["sample_idx"] = torch.tensor([r["sample_idx"] for r in rows])
        if "difficulty" in rows[0]:
            batch["difficulty"] = torch.tensor([r["difficulty"] for r in rows], dtype=torch.float32)
        return batch


def make_pairs(n: int = 40, seed: int = 0, difficulty: bool = True) -> Dataset:
    """Synthetic pairs: a molecule's atoms are a function of its text's tokens, plus a junk column."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "atoms": [], "junk": []}
    for _ in range(n):
        tokens = rng.integers(1, VOCAB, size=int(rng.integers(3, 7))).tolist()
        rows["input_ids"].append(tokens)
        rows["atoms"].append([t % ATOM_TYPES for t in tokens[:4]])
        rows["junk"].append("x")
    if difficulty:
        rows["difficulty"] = rng.random(n).astype(np.float32).tolist()
    return Dataset.from_dict(rows)


def make_model(seed: int = 0, **kwargs) -> TinyBackbone:
    torch.manual_seed(seed)
    return TinyBackbone(**kwargs)


TRAINING_ARGS = dict(
    per_device_train_batch_size=4,
    per_device_eval_batch_size=16,
    num_train_epochs=4,
    learning_rate=1e-2,
    lr_scheduler_type="linear",
    optim="adamw_torch",
    logging_steps=1,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    use_cpu=True,
    seed=0,
    disable_tqdm=True,
    dataloader_pin_memory=False,
)


def make_args(output_dir, **overrides) -> CurriculumTrainingArguments:
    values = {**TRAINING_ARGS, "difficulty_source": "precomputed", **overrides}
    return CurriculumTrainingArguments(output_dir=str(output_dir), **values)


class RecordingTrainer(CurriculumTrainer):
    """Records the sample indices of every training batch, per epoch."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.seen.setdefault(self.current_epoch, []).extend(inputs["sample_idx"].tolist())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def recording_trainer(args, train, model=None, **kwargs) -> RecordingTrainer:
    trainer = RecordingTrainer(
        model=model or make_model(), args=args, train_dataset=train, data_collator=TinyCollator(), **kwargs
    )
    trainer.seen = {}
    return trainer


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------- arguments
def test_arguments_parse_from_cli_and_yaml(tmp_path):
    parser = HfArgumentParser(CurriculumTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--curriculum",
            "random_subset",
            "--pacing",
            "root",
            "--pacing_root_degree",
            "3",
            "--pacing_fractions",
            "0.5",
            "1.0",
            "--intensity_target",
            "temperature",
            "--difficulty_refresh",
            "--difficulty_source",
            "model:some/checkpoint",
            "--use_cpu",
        ]
    )
    assert args.curriculum == CurriculumOrder.RANDOM_SUBSET and args.pacing.value == "root"
    assert args.pacing_root_degree == 3.0 and args.pacing_fractions == [0.5, 1.0]
    assert args.intensity_target == IntensityTarget.TEMPERATURE and args.difficulty_refresh is True
    assert args.difficulty_source == "model:some/checkpoint" and args.report_to in ("none", [], ["none"])

    config = {
        "output_dir": str(tmp_path),
        "curriculum": "hard_first",
        "pacing": "staged",
        "pacing_stages": 3,
        "intensity_beta": 0.5,
        "intensity_gamma_min": 0.25,
        "text_encoder_learning_rate": 3e-5,
        "num_train_epochs": 6,
        "pacing_cost_column": "num_nodes",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    (from_yaml,) = parser.parse_yaml_file(str(path))
    assert from_yaml.curriculum == CurriculumOrder.HARD_FIRST and from_yaml.pacing_stages == 3
    assert from_yaml.intensity_beta == 0.5 and from_yaml.text_encoder_learning_rate == 3e-5
    assert from_yaml.pacing_cost_column == "num_nodes" and args.pacing_cost_column is None

    as_dict = json.loads(from_yaml.to_json_string())
    assert as_dict["curriculum"] == "hard_first" and as_dict["pacing"] == "staged"
    assert as_dict["intensity_target"] == "lr" and as_dict["difficulty_column"] == "difficulty"
    custom = make_args(tmp_path, pacing=lambda _epoch, _num_epochs: 1.0)
    assert custom.to_dict()["pacing"].startswith("custom:")


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"pacing_start_fraction": 0.0}, "pacing_start_fraction"),
        ({"num_train_epochs": 2.5}, "num_train_epochs"),
        ({"difficulty_source": "oracle"}, "difficulty_source"),
        ({"curriculum": "shortest_first"}, "curriculum"),
        ({"intensity_target": "everything"}, "intensity_target"),
        ({"train_sampling_strategy": "sequential"}, "train_sampling_strategy"),
        ({"pacing_fractions": [0.5, 0.9]}, "pacing_fractions"),
        ({"intensity_gamma_max": 0.0}, "intensity_gamma"),
        ({"intensity_gamma_min": float("nan")}, "intensity_gamma_min"),
        ({"intensity_gamma_max": float("inf")}, "intensity_gamma_max"),
        ({"intensity_beta": float("nan")}, "intensity_beta"),
        ({"difficulty_warmup_epochs": float("nan")}, "difficulty_warmup_epochs"),
        ({"difficulty_warmup_batch_size": 0}, "difficulty_warmup_batch_size"),
        ({"difficulty_delta": float("inf")}, "difficulty_delta"),
        ({"pacing_root_degree": float("nan")}, "pacing_root_degree"),
        ({"pacing_saturation": float("nan")}, "pacing_saturation"),
        ({"text_encoder_learning_rate": float("nan")}, "text_encoder_learning_rate"),
        ({"prune_fraction": 1.0}, "prune_fraction"),
        ({"prune_fraction": 0.5, "prune_anneal_fraction": -1.0}, "prune_anneal_fraction"),
        ({"curriculum": "none", "prune_fraction": 0.5, "num_train_epochs": 2.5}, "num_train_epochs"),
        ({"eval_loss": False, "eval_retrieval": False}, "eval_loss"),
        ({"eval_loss": False, "metric_for_best_model": "eval_loss"}, "metric_for_best_model"),
        (
            {"eval_loss": False, "load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "epoch"},
            "metric_for_best_model",
        ),
    ],
)
def test_arguments_validation_names_the_field(tmp_path, overrides, field_name):
    with pytest.raises(ValueError, match=field_name):
        make_args(tmp_path, **overrides)


def test_fractional_epochs_allowed_without_curriculum(tmp_path):
    assert make_args(tmp_path, curriculum="none", num_train_epochs=2.5).num_train_epochs == 2.5


# ------------------------------------------------------------------------------------------- steps and schedule
@pytest.mark.parametrize("accumulation", [1, 2])
def test_schedule_spans_exactly_the_curriculum_steps(tmp_path, accumulation):
    n, epochs, batch = 42, 4, 4
    args = make_args(tmp_path, gradient_accumulation_steps=accumulation)
    trainer = recording_trainer(args, make_pairs(n))
    trainer.train()

    pacing = get_pacing("staged")
    planned = planned_optimizer_steps(n, pacing, epochs, batch, gradient_accumulation_steps=accumulation)
    # pools 11/21/32/42 -> batches 3/6/8/11 -> GA 2: 2/3/4/6 updates
    assert planned == ([3, 6, 8, 11] if accumulation == 1 else [2, 3, 4, 6])
    assert trainer.state.global_step == trainer.state.max_steps == sum(planned)
    assert [r["optimizer_steps"] for r in trainer.curriculum_history] == planned
    assert [r["planned_optimizer_steps"] for r in trainer.curriculum_history] == planned
    assert trainer.lr_scheduler.last_epoch == sum(planned)
    assert trainer.lr_scheduler.get_last_lr()[0] == 0.0  # the linear schedule ended exactly at the last step

    # Every logged LR is the linear schedule times gamma of the step's epoch (0.5 -> 1.0 over four stages).
    total, cumulative = sum(planned), np.cumsum(planned)
    logged = [(h["step"], h["learning_rate"]) for h in trainer.state.log_history if "learning_rate" in h]
    assert len(logged) == total
    for step, lr in logged:
        epoch = int(np.searchsorted(cumulative, step - 1, side="right"))
        expected = 1e-2 * (1 - (step - 1) / total) * (0.5 + 0.5 * epoch / 3)
        assert lr == pytest.approx(expected, rel=1e-6), step

    # Sample passes: each epoch saw exactly its pool, once.
    sizes = pool_sizes(n, pacing, epochs)
    easy_to_hard = np.argsort(np.asarray(make_pairs(n)["difficulty"]), kind="stable")
    for epoch, size in enumerate(sizes):
        assert sorted(trainer.seen[epoch]) == sorted(easy_to_hard[:size].tolist())
    assert sum(len(v) for v in trainer.seen.values()) == planned_sample_passes(n, pacing, epochs) == 106
    assert [r["samples_seen"] for r in trainer.curriculum_history] == sizes
    summary = trainer.curriculum_summary()
    assert summary["samples_seen"] == summary["planned_sample_passes"] == 106
    assert summary["sample_pass_saving"] == pytest.approx(1 - 106 / 168)
    # Curriculum state in the logs.
    train_logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["curriculum/stage"] for h in train_logs][:: max(1, len(train_logs) - 1)] == [0, 3]
    assert train_logs[-1]["curriculum/samples_seen"] == 106 and train_logs[-1]["intensity/gamma"] == 1.0
    assert {"loss/t2m", "loss/m2t", "intensity/mean_weight", "loss/retrieval"} <= set(train_logs[-1])
    assert train_logs[0]["intensity/mean_weight"] == 1.0 and train_logs[-1]["intensity/mean_weight"] > 1.0


def test_paced_batch_size_trains_every_pool_in_as_many_steps_as_a_full_epoch(tmp_path):
    class BatchSizes(RecordingTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.sizes.setdefault(self.current_epoch, []).append(len(inputs["sample_idx"]))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = make_args(tmp_path, pace_batch_size=True, per_device_train_batch_size=8)
    trainer = BatchSizes(model=make_model(), args=args, train_dataset=make_pairs(40), data_collator=TinyCollator())
    trainer.seen, trainer.sizes = {}, {}
    trainer.train()
    # pools 10/20/30/40, batches of at most 2/4/6/8: five optimizer steps in every epoch, each pool seen once
    assert trainer.plan.epoch_batch_sizes == [2, 4, 6, 8]
    assert trainer.sizes == {0: [2] * 5, 1: [4] * 5, 2: [6] * 5, 3: [8] * 5}
    assert [r["optimizer_steps"] for r in trainer.curriculum_history] == [5] * 4
    assert trainer.state.global_step == trainer.state.max_steps == 20
    easy_to_hard = np.argsort(np.asarray(make_pairs(40)["difficulty"]), kind="stable")
    for epoch, size in enumerate((10, 20, 30, 40)):
        assert sorted(trainer.seen[epoch]) == sorted(easy_to_hard[:size].tolist())
    assert trainer.curriculum_summary()["samples_seen"] == 100


def test_max_steps_truncates_the_planned_curriculum(tmp_path):
    trainer = recording_trainer(make_args(tmp_path, max_steps=10), make_pairs(40))  # planned 3/5/8/10 steps
    trainer.train()
    assert trainer.state.global_step == trainer.state.max_steps == 10
    assert trainer.lr_scheduler.get_last_lr()[0] == 0.0
    assert [r["optimizer_steps"] for r in trainer.curriculum_history] == [3, 5, 2]
    assert [len(trainer.seen[e]) for e in range(3)] == [10, 20, 8]


def test_max_steps_beyond_the_plan_is_refused(tmp_path):
    trainer = recording_trainer(make_args(tmp_path, max_steps=1000), make_pairs(40))  # planned 3/5/8/10 steps
    with pytest.raises(ValueError, match=r"max_steps=1000.*26 optimizer steps.*num_train_epochs=4"):
        trainer.train()


def test_more_stages_than_epochs_is_reported(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="class_hf.training_args"):
        make_args(tmp_path, pacing_stages=8, num_train_epochs=2)
    assert "8 pacing stages over `num_train_epochs=2`" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="class_hf.training_args"):
        make_args(tmp_path, pacing_stages=4, num_train_epochs=4)
    assert "pacing stages" not in caplog.text


def half_then_all(epoch: int, num_epochs: int) -> float:
    return 0.5 if epoch < num_epochs - 1 else 1.0


def test_custom_pacing_function(tmp_path):
    trainer = recording_trainer(make_args(tmp_path, num_train_epochs=3), make_pairs(40), pacing=half_then_all)
    trainer.train()
    assert [len(trainer.seen[e]) for e in range(3)] == [20, 20, 40]
    assert trainer.state.global_step == 5 + 5 + 10
    assert [r["stage"] for r in trainer.curriculum_history] == [0, 0, 1]


def test_collator_columns_kept_and_junk_dropped(tmp_path):
    collator = TinyCollator()
    trainer = CurriculumTrainer(
        model=make_model(),
        args=make_args(tmp_path, num_train_epochs=1),
        train_dataset=make_pairs(),
        data_collator=collator,
    )
    trainer.train()
    assert collator.seen_columns == {"input_ids", "atoms", "sample_idx", "difficulty"}
    assert trainer.train_dataset["sample_idx"][:5] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------- intensity
@pytest.mark.parametrize("aux_weight", [0.0, 0.3])
def test_intensity_weights_reach_the_gradient(tmp_path, aux_weight):
    train = make_pairs(24)
    args = make_args(tmp_path, intensity_beta=2.0, intensity_target="none")
    trainer = CurriculumTrainer(
        model=make_model(aux_weight=aux_weight), args=args, train_dataset=train, data_collator=TinyCollator()
    )
    trainer.train()  # leaves the trainer in its last epoch: progress 1
    model = trainer.model
    model.train()
    batch = TinyCollator()([trainer.train_dataset[i] for i in (3, 0, 7, 11, 5, 20)])

    model.zero_grad()
    trainer.compute_loss(model, dict(batch)).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    out = model(batch["input_ids"], batch["attention_mask"], batch["graph"])
    d = torch.tensor(np.asarray(train["difficulty"], dtype=np.float32))[batch["sample_idx"]]
    w = 1 + 2.0 * 1.0 * d
    manual = (w * out.per_sample_loss).sum() / w.sum() + (out.loss - out.per_sample_loss.mean())
    manual.backward()
    for name, param in model.named_parameters():
        assert torch.allclose(got[name], param.grad, atol=1e-6), name

    model.zero_grad()
    model(batch["input_ids"], batch["attention_mask"], batch["graph"]).loss.backward()
    assert not torch.allclose(got["text_proj.weight"], model.text_proj.weight.grad)


def test_intensity_targets_loss_and_temperature(tmp_path):
    train = make_pairs(24)
    trainer = CurriculumTrainer(
        model=make_model(),
        args=make_args(tmp_path, intensity_beta=0.0, intensity_target="loss", intensity_gamma_max=3.0),
        train_dataset=train,
        data_collator=TinyCollator(),
    )
    trainer.train()
    model = trainer.model
    model.train()
    batch = TinyCollator()([trainer.train_dataset[i] for i in range(6)])
    plain = model(batch["input_ids"], batch["attention_mask"], batch["graph"]).loss
    assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(3.0 * plain.item(), rel=1e-6)
    model.eval()
    assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(plain.item(), rel=1e-6)

    temp = CurriculumTrainer(
        model=make_model(),
        args=make_args(tmp_path, intensity_target="temperature", intensity_gamma_min=0.5, intensity_gamma_max=2.0),
        train_dataset=train,
        data_collator=TinyCollator(),
    )
    temp.train()
    seen = [v for v in temp.model.seen_intensity if v is not None]
    assert seen[0] == pytest.approx(0.5) and seen[-1] == pytest.approx(2.0)
    assert sorted(set(round(v, 6) for v in seen)) == [0.5, 1.0, 1.5, 2.0]

    class Plain(TinyBackbone):
        supports_intensity = False

    with pytest.raises(ValueError, match="supports_intensity"):
        CurriculumTrainer(
            model=Plain(), args=make_args(tmp_path, intensity_target="margin"), data_collator=TinyCollator()
        )


def test_text_encoder_learning_rate_param_groups(tmp_path):
    trainer = CurriculumTrainer(
        model=make_model(),
        args=make_args(tmp_path, text_encoder_learning_rate=1e-4, intensity_target="none"),
        train_dataset=make_pairs(),
        data_collator=TinyCollator(),
    )
    optimizer = trainer.create_optimizer()
    text = {id(p) for p in trainer.model.text_encoder.parameters()}
    for group in optimizer.param_groups:
        in_text = {id(p) in text for p in group["params"]}
        assert len(in_text) == 1
        assert group["lr"] == (1e-4 if in_text == {True} else 1e-2)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(trainer.model.parameters()))


# --------------------------------------------------------------------------------------------------- baseline
def test_curriculum_none_and_intensity_off_is_a_plain_trainer(tmp_path):
    train = make_pairs(30)
    ours = CurriculumTrainer(
        model=make_model(),
        args=make_args(
            tmp_path / "a", num_train_epochs=2, curriculum="none", intensity_target="none", intensity_beta=0.0
        ),
        train_dataset=train,
        data_collator=TinyCollator(),
    )
    ours.train()
    plain = Trainer(
        model=make_model(),
        args=TrainingArguments(
            output_dir=str(tmp_path / "b"), remove_unused_columns=False, **{**TRAINING_ARGS, "num_train_epochs": 2}
        ),
        train_dataset=train,
        data_collator=TinyCollator(),
    )
    plain.train()
    assert ours.state.global_step == plain.state.global_step == 16
    for (name, a), b in zip(ours.model.state_dict().items(), plain.model.state_dict().values(), strict=False):
        assert torch.equal(a, b), name
    assert [r["samples_seen"] for r in ours.curriculum_history] == [30, 30]


# ---------------------------------------------------------------------------------------------------- resume
class StopAt(TrainerCallback):
    """Interrupts training (with a save) at the end of a given curriculum epoch or at an optimizer step.

    ``state.epoch`` counts curriculum epochs (CurriculumCallback runs before the user's callbacks).
    """

    def __init__(self, epoch: int | None = None, step: int | None = None) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, _args, state, control, **kwargs):
        epoch_done = self.epoch is not None and state.epoch >= self.epoch
        if epoch_done or (self.step is not None and state.global_step >= self.step):
            control.should_training_stop = control.should_save = True
        return control


@pytest.mark.parametrize(("stop", "checkpoint_step"), [({"epoch": 2}, 8), ({"step": 12}, 12)])
def test_kill_free_resume_matches_an_uninterrupted_run(tmp_path, stop, checkpoint_step):
    train = make_pairs(40)
    overrides = dict(intensity_beta=1.0, gradient_accumulation_steps=1, save_strategy="no")
    # pools 10/20/30/40, batches 3/5/8/10: epoch ends at steps 3, 8, 16, 26; step 12 lies inside epoch 2.
    full = recording_trainer(make_args(tmp_path / "full", **overrides), train)
    full.train()

    first = recording_trainer(make_args(tmp_path / "run", **overrides), train, callbacks=[StopAt(**stop)])
    first.train()
    assert first.state.global_step == checkpoint_step
    checkpoint = tmp_path / "run" / f"checkpoint-{checkpoint_step}"
    assert (checkpoint / STATE_FILE).is_file() and (checkpoint / DIFFICULTY_FILE).is_file()
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert state["sampler"]["seed"] == 0 and state["sampler"]["num_samples"] == 40

    resumed = recording_trainer(make_args(tmp_path / "run", **overrides), train, model=make_model(seed=123))
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == full.state.global_step == 26
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    # The resumed run saw exactly the rest of what the uninterrupted run saw.
    for epoch, indices in full.seen.items():
        before = first.seen.get(epoch, [])
        after = resumed.seen.get(epoch, [])
        assert before + after == indices, epoch
    assert [r["samples_seen"] for r in resumed.curriculum_history] == [10, 20, 30, 40]
    assert [r["optimizer_steps"] for r in resumed.curriculum_history] == [3, 5, 8, 10]


def test_kill_free_resume_with_a_paced_batch_size(tmp_path):
    train = make_pairs(40)
    overrides = dict(pace_batch_size=True, per_device_train_batch_size=8, save_strategy="no")
    full = recording_trainer(make_args(tmp_path / "full", **overrides), train)
    full.train()
    first = recording_trainer(make_args(tmp_path / "run", **overrides), train, callbacks=[StopAt(step=7)])
    first.train()  # five steps per epoch: step 7 lies inside epoch 1
    resumed = recording_trainer(make_args(tmp_path / "run", **overrides), train, model=make_model(seed=123))
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-7"))
    assert resumed.state.global_step == full.state.global_step == 20
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for epoch, indices in full.seen.items():
        assert first.seen.get(epoch, []) + resumed.seen.get(epoch, []) == indices, epoch


def test_resume_with_other_curriculum_is_refused(tmp_path):
    train = make_pairs(40)
    first = recording_trainer(make_args(tmp_path, save_strategy="epoch"), train, callbacks=[StopAt(epoch=1)])
    first.train()
    other = recording_trainer(make_args(tmp_path, curriculum="hard_first"), train)
    with pytest.raises(ValueError, match="order"):
        other.train(resume_from_checkpoint=True)


# ------------------------------------------------------------------------------------------------ difficulty
def test_precomputed_without_column_is_an_error(tmp_path):
    trainer = CurriculumTrainer(
        model=make_model(),
        args=make_args(tmp_path, difficulty_source="precomputed", difficulty_column="hardness"),
        train_dataset=make_pairs(),
        data_collator=TinyCollator(),
    )
    with pytest.raises(ValueError, match="hardness"):
        trainer.train()


def test_missing_difficulty_is_scored_before_training(tmp_path):
    pytest.importorskip("class_hf.curriculum.difficulty")
    trainer = recording_trainer(
        make_args(tmp_path, difficulty_source="warmup", difficulty_warmup_epochs=1, num_train_epochs=2),
        make_pairs(32, difficulty=False),
    )
    trainer.train()
    assert trainer.scoring_info["source"] == "warmup" and trainer.scoring_info["seconds"] > 0
    assert {"n_confusing_t2m", "n_confusing_m2t", "difficulty"} <= set(trainer.train_dataset.column_names)
    difficulty = np.asarray(trainer.train_dataset["difficulty"])
    assert np.array_equal(trainer.difficulty, difficulty)
    first_pool = sorted(trainer.seen[0])
    assert first_pool == sorted(np.argsort(difficulty, kind="stable")[: len(first_pool)].tolist())
    assert trainer.curriculum_summary()["scoring_seconds"] == pytest.approx(trainer.scoring_info["seconds"])
    assert any("curriculum/scoring_seconds" in h for h in trainer.state.log_history)


@pytest.mark.parametrize(("warmup_batch_size", "steps"), [(None, 4), (8, 2)])
def test_warmup_scorer_trains_with_the_training_batch_size(tmp_path, warmup_batch_size, steps):
    """The warm-up is training: its batch is the training batch (or its own), never the encoding batch size."""
    pytest.importorskip("class_hf.curriculum.difficulty")
    args = make_args(
        tmp_path,
        difficulty_source="warmup",
        difficulty_warmup_fraction=1.0,
        difficulty_warmup_epochs=1,
        difficulty_warmup_batch_size=warmup_batch_size,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=16,
        num_train_epochs=1,
    )
    trainer = recording_trainer(args, make_pairs(16, difficulty=False))
    trainer.train()
    assert trainer.scoring_info["warmup_pairs"] == 16
    assert trainer.scoring_info["warmup_batch_size"] == (warmup_batch_size or 4)
    assert trainer.scoring_info["warmup_steps"] == steps


# ------------------------------------------------------------------------------------------------ evaluation
def test_evaluate_reports_loss_and_retrieval_metrics(tmp_path):
    train, evaluation = make_pairs(40), make_pairs(20, seed=1)
    args = make_args(
        tmp_path,
        per_device_eval_batch_size=32,
        eval_strategy="epoch",
        save_strategy="epoch",
        metric_for_best_model="eval_t2m_mrr",
        load_best_model_at_end=True,
        save_total_limit=2,
    )
    trainer = CurriculumTrainer(
        model=make_model(), args=args, train_dataset=train, eval_dataset=evaluation, data_collator=TinyCollator()
    )
    trainer.train()
    metrics = trainer.evaluate()
    for key in ("eval_loss", "eval_t2m_mrr", "eval_m2t_mrr", "eval_mrr", "eval_t2m_hits@1", "eval_m2t_hits@10"):
        assert key in metrics, key
    assert metrics["eval_mrr"] == pytest.approx((metrics["eval_t2m_mrr"] + metrics["eval_m2t_mrr"]) / 2)

    model = trainer.model.eval()
    batch = TinyCollator()([evaluation[i] for i in range(len(evaluation))])
    with torch.no_grad():
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        mol = model.encode_molecule(batch["graph"])
        scores = text @ mol.T
        expected_loss = model(batch["input_ids"], batch["attention_mask"], batch["graph"]).loss.item()
    ranks = (scores >= scores.diag().unsqueeze(1)).sum(1)  # ties count against the query
    assert metrics["eval_t2m_mrr"] == pytest.approx((1.0 / ranks.float()).mean().item(), rel=1e-5)
    assert metrics["eval_loss"] == pytest.approx(expected_loss, rel=1e-4)  # one eval batch holds all 20 pairs

    assert trainer.state.best_metric is not None and trainer.state.best_model_checkpoint is not None
    assert sum(r["eval_seconds"] for r in trainer.curriculum_history) > 0
    assert os.path.isfile(os.path.join(trainer.state.best_model_checkpoint, STATE_FILE))


def test_eval_loss_false_skips_the_loss_pass_and_keeps_the_retrieval_metrics(tmp_path):
    train, evaluation = make_pairs(40), make_pairs(20, seed=1)
    common = dict(per_device_eval_batch_size=8, eval_strategy="epoch", metric_for_best_model="eval_mrr")
    with_loss = CurriculumTrainer(
        model=make_model(), args=make_args(tmp_path / "a", **common), train_dataset=train, eval_dataset=evaluation,
        data_collator=TinyCollator(),
    )  # fmt: skip
    without = CurriculumTrainer(
        model=make_model(), args=make_args(tmp_path / "b", eval_loss=False, **common), train_dataset=train,
        eval_dataset=evaluation, data_collator=TinyCollator(),
    )  # fmt: skip
    forwards = []
    without.model.register_forward_hook(lambda module, _args, _out: forwards.append(module.training))
    without.train()
    with_loss.train()
    assert forwards and all(forwards)  # training passes only: no forward pass of the loss in evaluation
    metrics, reference = without.evaluate(), with_loss.evaluate()
    assert "eval_loss" not in metrics and "eval_loss" in reference
    for key in ("eval_t2m_mrr", "eval_m2t_mrr", "eval_mrr", "eval_t2m_hits@1"):
        assert metrics[key] == pytest.approx(reference[key]), key  # the same training, the same retrieval metrics
    assert metrics["eval_samples_per_second"] > 0
    assert [h["eval_mrr"] for h in without.state.log_history if "eval_mrr" in h][:4] == [
        h["eval_mrr"] for h in with_loss.state.log_history if "eval_mrr" in h
    ][:4]


def test_difficulty_refresh_at_stage_boundaries_and_resume(tmp_path):
    pytest.importorskip("class_hf.curriculum.difficulty")

    class SnapshotTrainer(RecordingTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.snapshots.setdefault(self.current_epoch, self.difficulty.copy())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def make(output_dir, **kwargs):
        args = make_args(output_dir, difficulty_refresh=True)
        trainer = SnapshotTrainer(
            model=make_model(), args=args, train_dataset=train, data_collator=TinyCollator(), **kwargs
        )
        trainer.seen, trainer.snapshots = {}, {}
        return trainer

    train = make_pairs(40)
    full = make(tmp_path / "full")
    full.train()
    column = np.asarray(train["difficulty"], dtype=np.float64)
    assert np.array_equal(full.snapshots[0], column)
    sizes = pool_sizes(40, get_pacing("staged"), 4)
    for epoch in range(4):
        if epoch:
            assert not np.array_equal(full.snapshots[epoch], full.snapshots[epoch - 1]), epoch  # re-scored
            assert full.curriculum_history[epoch]["scoring_seconds"] > 0
        ranked = np.argsort(full.snapshots[epoch], kind="stable")[: sizes[epoch]]
        assert sorted(full.seen[epoch]) == sorted(ranked.tolist()), epoch
    assert full.curriculum_history[0]["scoring_seconds"] == 0

    # Stopped inside epoch 2 (after its refresh), resumed: no second refresh, same weights as the full run.
    first = make(tmp_path / "run", callbacks=[StopAt(step=12)])
    first.train()
    resumed = make(tmp_path / "run")
    resumed.train(resume_from_checkpoint=True)
    assert np.array_equal(resumed.snapshots[2], full.snapshots[2])
    assert resumed.curriculum_history[2]["scoring_seconds"] > 0  # carried over from the interrupted run
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_dual_encoder_with_the_real_collator(tmp_path, chebi20_sample_dir, tiny_tokenizer, tiny_bert_config):
    """The shipped pieces together: ChEBI-20 rows, featurization, MoleculeTextCollator, DualEncoderModel."""
    from class_hf.data import MoleculeTextCollator, featurize_molecules, load_chebi20
    from class_hf.models.modeling_dual_encoder import DualEncoderConfig, DualEncoderModel

    pairs = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"].select(range(48))
    pairs = featurize_molecules(pairs, desc=None)
    rng = np.random.default_rng(0)
    train = pairs.select(range(32)).add_column("difficulty", rng.random(32).astype(np.float32).tolist())
    evaluation = pairs.select(range(32, 48))
    torch.manual_seed(0)
    config = DualEncoderConfig(text_config=tiny_bert_config, gnn_hidden_size=16, gnn_num_layers=2, projection_dim=8)
    args = make_args(
        tmp_path,
        num_train_epochs=2,
        eval_strategy="epoch",
        intensity_target="temperature",
        text_encoder_learning_rate=1e-4,
        gather_across_ranks=True,
    )
    trainer = CurriculumTrainer(
        model=DualEncoderModel(config),
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=MoleculeTextCollator(tiny_tokenizer, max_length=64),
    )
    trainer.train()
    assert trainer.model.config.gather_across_ranks is True
    assert trainer.state.global_step == sum(planned_optimizer_steps(32, get_pacing("staged"), 2, batch_size=4))
    assert [r["samples_seen"] for r in trainer.curriculum_history] == [8, 32]
    evals = [h for h in trainer.state.log_history if "eval_t2m_mrr" in h]
    assert len(evals) == 2 and all(0 < h["eval_mrr"] <= 1 for h in evals)


# ------------------------------------------------------------------------------------------ public hooks only
def test_no_private_trainer_method_is_overridden_but_the_signature_columns():
    """CurriculumTrainer extends the Trainer through public hooks and callbacks (plus the TRL-style column hook)."""
    allowed = {"_set_signature_columns_if_needed", "_get_train_sampler"}
    overridden = {
        name
        for name in vars(CurriculumTrainer)
        if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)
    }
    assert overridden <= allowed, overridden - allowed


def test_evaluation_and_checkpoint_once_per_curriculum_epoch(tmp_path):
    """`eval_strategy`/`save_strategy="epoch"` act at the end of every curriculum epoch, not of the Trainer's pass."""
    args = make_args(tmp_path, eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch")
    trainer = CurriculumTrainer(
        model=make_model(),
        args=args,
        train_dataset=make_pairs(40),  # epoch ends at steps 3, 8, 16, 26
        eval_dataset=make_pairs(12, seed=1),
        data_collator=TinyCollator(),
    )
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_mrr" in h]
    assert [(h["step"], h["epoch"]) for h in evals] == [(3, 1.0), (8, 2.0), (16, 3.0), (26, 4.0)]
    assert sorted(int(p.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*")) == [3, 8, 16, 26]
    assert [h["curriculum/epoch"] for h in trainer.state.log_history if "loss" in h] == [0, 1, 2, 3]
    assert all(r["eval_seconds"] > 0 for r in trainer.curriculum_history)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0.5] * 39 + [1.7], r"`difficulty` must lie in \[0, 1\].*row 39 holds 1.7"),
        ([-0.2] + [0.5] * 39, r"`difficulty` must lie in \[0, 1\].*row 0 holds -0.2"),
        (["0.5"] * 40, r"Column `difficulty` must hold one number per row.*'0.5'"),
        ([True, False] * 20, r"Column `difficulty` must hold one number per row.*bool"),
        (["easy", "hard"] * 20, r"Column `difficulty` must hold one number per row.*'easy'"),
    ],
)
def test_precomputed_difficulty_is_checked_by_the_trainer(tmp_path, values, match):
    train = make_pairs(40, difficulty=False).add_column("difficulty", values)
    trainer = recording_trainer(make_args(tmp_path), train)
    with pytest.raises(ValueError, match=match):
        trainer.train()
    assert not (tmp_path / "checkpoint-1").exists()


def test_a_resumed_run_adds_the_times_of_the_interrupted_epoch(tmp_path):
    train = make_pairs(40)
    first = recording_trainer(make_args(tmp_path), train, callbacks=[StopAt(step=12)])
    first.train()
    state = json.loads((tmp_path / "checkpoint-12" / "trainer_state.json").read_text())
    carry = state["stateful_callbacks"]["CurriculumCallback"]["attributes"]["carry"]
    assert carry["epoch"] == 2 and carry["optimizer_steps"] == 4 and carry["train_seconds"] > 0
    resumed = recording_trainer(make_args(tmp_path), train)
    resumed.train(resume_from_checkpoint=True)
    history = resumed.curriculum_history
    assert [r["optimizer_steps"] for r in history] == [3, 5, 8, 10]
    assert history[2]["train_seconds"] > carry["train_seconds"]
    assert [r["train_seconds"] for r in history[:2]] == [r["train_seconds"] for r in first.curriculum_history[:2]]
    assert first.curriculum_history[2]["complete"] is False and history[2]["complete"] is True


def test_resume_with_the_trainer_restoring_callback_states(tmp_path):
    """`restore_callback_states_from_checkpoint=True` rebuilds the CurriculumCallback; the run stays identical."""
    train = make_pairs(40)
    full = recording_trainer(make_args(tmp_path / "full"), train)
    full.train()
    overrides = {"restore_callback_states_from_checkpoint": True}
    recording_trainer(make_args(tmp_path / "run", **overrides), train, callbacks=[StopAt(step=12)]).train()
    resumed = recording_trainer(make_args(tmp_path / "run", **overrides), train, model=make_model(seed=5))
    resumed.train(resume_from_checkpoint=True)
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert [r["samples_seen"] for r in resumed.curriculum_history] == [10, 20, 30, 40]


def test_confusion_batches_cover_every_epoch_and_keep_neighbours_together(tmp_path):
    """`batch_composition="confusion"`: the baseline's random order, batches half filled by confusing neighbours."""
    pytest.importorskip("class_hf.curriculum.difficulty")

    class BatchRecorder(RecordingTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.batches.append(inputs["sample_idx"].tolist())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = make_args(
        tmp_path, curriculum="none", intensity_beta=0.0, intensity_target="none", batch_composition="confusion",
        difficulty_source="warmup", confusion_neighbors=4, per_device_train_batch_size=8, num_train_epochs=2,
    )  # fmt: skip
    trainer = BatchRecorder(
        model=make_model(), args=args, train_dataset=make_pairs(40, difficulty=False), data_collator=TinyCollator()
    )
    trainer.seen, trainer.batches = {}, []
    trainer.train()
    for epoch in range(2):
        assert sorted(trainer.seen[epoch]) == list(range(40))  # every pair once per epoch
    neighbors = trainer.difficulty_provider.neighbors
    assert neighbors.shape == (40, 4)
    first = trainer.batches[0]
    assert first[1] in neighbors[first[0]]  # the seed's most confusing neighbour in the pool joins its batch


def test_confusion_batches_with_drop_last_take_whole_batches(tmp_path):
    pytest.importorskip("class_hf.curriculum.difficulty")
    args = make_args(
        tmp_path, batch_composition="confusion", difficulty_source="warmup", confusion_neighbors=4,
        per_device_train_batch_size=8, num_train_epochs=4, dataloader_drop_last=True,
    )  # fmt: skip
    trainer = recording_trainer(args, make_pairs(42, difficulty=False))  # pools 11 / 21 / 32 / 42
    trainer.train()
    assert [len(trainer.seen[epoch]) for epoch in range(4)] == [8, 16, 32, 40]
    for epoch in range(4):
        assert len(set(trainer.seen[epoch])) == len(trainer.seen[epoch])


def test_pacing_by_cost_trains_pools_holding_their_share_of_the_cost(tmp_path):
    train = make_pairs(40)
    cost = [float(len(tokens)) for tokens in train["input_ids"]]  # 3 to 6 per pair
    train = train.add_column("num_tokens", cost)
    trainer = recording_trainer(make_args(tmp_path, pacing_cost_column="num_tokens"), train)
    trainer.train()
    cost, difficulty = np.asarray(cost), np.asarray(train["difficulty"])
    easy_to_hard = np.argsort(difficulty, kind="stable")
    sizes = trainer.plan.pool_sizes
    assert sizes[-1] == 40 and sizes == sorted(sizes)
    for epoch, share in enumerate((0.25, 0.5, 0.75, 1.0)):
        pool = easy_to_hard[: sizes[epoch]]
        assert sorted(trainer.seen[epoch]) == sorted(pool.tolist())  # the easiest pairs, each once
        assert cost[pool].sum() >= share * cost.sum() > cost[pool[:-1]].sum()
    assert trainer.state.global_step == trainer.state.max_steps == trainer.plan.total_updates
    assert trainer.curriculum_summary()["samples_seen"] == sum(sizes)
    assert trainer.lr_scheduler.get_last_lr()[0] == 0.0  # the linear schedule spans the real steps


def test_stratified_pools_keep_the_training_sets_mix(tmp_path):
    train = make_pairs(40)
    group = ["small" if i % 2 else "large" for i in range(40)]
    order = np.argsort(np.asarray(train["difficulty"]), kind="stable")
    for row in order[:10]:  # the ten easiest pairs are all "large"
        group[row] = "large"
    train = train.add_column("size_group", group)
    trainer = recording_trainer(make_args(tmp_path, curriculum_strata_column="size_group"), train)
    trainer.train()
    group, difficulty = np.asarray(group), np.asarray(train["difficulty"])
    assert trainer.plan.pool_sizes == [10, 20, 30, 40]  # pacing by count: the sizes are unchanged
    for epoch, size in enumerate(trainer.plan.pool_sizes):
        seen = np.asarray(sorted(trainer.seen[epoch]))
        assert len(seen) == size
        for name in ("large", "small"):
            members = np.flatnonzero(group == name)
            taken = np.intersect1d(seen, members)
            assert abs(len(taken) - size / 40 * len(members)) <= 1, (epoch, name)
            assert np.array_equal(np.sort(difficulty[taken]), np.sort(difficulty[members])[: len(taken)])
    assert np.mean(group[trainer.seen[0]] == "large") < 1.0  # unstratified, the first pool would be all "large"
    assert trainer.curriculum_summary()["samples_seen"] == 100


def test_stratified_pools_name_a_missing_column_and_check_their_arguments(tmp_path):
    trainer = recording_trainer(make_args(tmp_path, curriculum_strata_column="num_nodes"), make_pairs(40))
    with pytest.raises(ValueError, match=r"`curriculum_strata_column='num_nodes'` is not a column of the training"):
        trainer.train()
    with pytest.raises(ValueError, match="must name a column"):
        make_args(tmp_path, curriculum_strata_column="")
    with pytest.raises(ValueError, match="`curriculum_num_strata` must be a positive integer"):
        make_args(tmp_path, curriculum_strata_column="num_nodes", curriculum_num_strata=0)
    bad = make_pairs(40).add_column("num_nodes", [3.0] * 39 + [None])
    trainer = recording_trainer(make_args(tmp_path, curriculum_strata_column="num_nodes"), bad)
    with pytest.raises(ValueError, match=r"'num_nodes'. is missing in 1 rows \(first: row 39\)"):
        trainer.train()


def test_pacing_by_cost_names_a_missing_column_and_refuses_refresh(tmp_path):
    trainer = recording_trainer(make_args(tmp_path, pacing_cost_column="num_nodes"), make_pairs(40))
    with pytest.raises(ValueError, match=r"`pacing_cost_column='num_nodes'` is not a column of the training set"):
        trainer.train()
    with pytest.raises(ValueError, match="cannot be combined with `difficulty_refresh`"):
        make_args(tmp_path, pacing_cost_column="num_nodes", difficulty_refresh=True)
    with pytest.raises(ValueError, match="must name a column"):
        make_args(tmp_path, pacing_cost_column="")
    bad = make_pairs(40).add_column("num_nodes", [1.0] * 39 + [-2.0])
    trainer = recording_trainer(make_args(tmp_path, pacing_cost_column="num_nodes"), bad)
    with pytest.raises(ValueError, match=r"'num_nodes'. must be positive; 1 rows are not \(first: row 39"):
        trainer.train()


# ------------------------------------------------------------------------------------------------------- pruning
PRUNED = dict(prune_fraction=0.5, num_train_epochs=8, difficulty_source="warmup")  # epochs 2 to 6 pruned
NO_CURRICULUM = dict(curriculum="none", intensity_beta=0.0, intensity_target="none")


def test_pruning_without_a_curriculum_leaves_learned_pairs_out(tmp_path):
    trainer = recording_trainer(make_args(tmp_path, **NO_CURRICULUM, **PRUNED), make_pairs(40, difficulty=False))
    trainer.train()
    assert trainer.plan.pool_sizes == [40, 40, 30, 30, 30, 30, 30, 40]
    assert trainer.scoring_info == {} and trainer.difficulty_provider.scoring_seconds == 0  # nothing scored
    pruning = trainer.pruning
    for epoch, size in enumerate(trainer.plan.pool_sizes):
        seen = trainer.seen[epoch]
        assert len(seen) == len(set(seen)) == size, epoch  # each kept pair once
        if pruning.prunes(epoch):
            losses = pruning.latest_losses(epoch - 2)
            learned = set(np.argsort(losses, kind="stable")[:20].tolist())
            assert set(range(40)) - set(seen) <= learned, epoch  # left out: only pairs of the lower-loss half
    assert pruning.recorded(0) == 40 and np.isfinite(pruning.latest_losses(0)).all()
    assert trainer.curriculum_summary()["samples_seen"] == 270
    assert trainer.state.global_step == trainer.plan.total_updates == trainer.state.max_steps
    weights = {}
    for log in trainer.state.log_history:
        if "intensity/mean_weight" in log:
            weights.setdefault(log["curriculum/epoch"], []).append(log["intensity/mean_weight"])
    assert all(w == 1.0 for e in (0, 1, 7) for w in weights[e])  # whole epochs: no weights
    assert all(w >= 1.0 for e in range(2, 7) for w in weights[e]) and max(weights[2]) > 1.0


def test_pruning_composes_with_the_curriculum_pools(tmp_path):
    train = make_pairs(40)
    trainer = recording_trainer(make_args(tmp_path, **PRUNED), train)
    trainer.train()
    # Pools 10/10/20/20/30/30/40/40; epochs 2 to 6 leave out floor(0.5 * ceil(n / 2)) of each.
    assert trainer.plan.pool_sizes == [10, 10, 15, 15, 23, 23, 30, 40]
    easy_to_hard = np.argsort(np.asarray(train["difficulty"]), kind="stable")
    for epoch, full in enumerate([10, 10, 20, 20, 30, 30, 40, 40]):
        assert set(trainer.seen[epoch]) <= set(easy_to_hard[:full].tolist())


@pytest.mark.parametrize("curriculum", [NO_CURRICULUM, {}])
def test_kill_free_resume_with_pruning(tmp_path, curriculum):
    train = make_pairs(40, difficulty=False)
    overrides = {**curriculum, **PRUNED}
    full = recording_trainer(make_args(tmp_path / "full", **overrides), train)
    full.train()
    first = recording_trainer(make_args(tmp_path / "run", **overrides), train, callbacks=[StopAt(epoch=4)])
    first.train()
    checkpoint = tmp_path / "run" / f"checkpoint-{first.state.global_step}"
    assert (checkpoint / PRUNING_FILE).is_file() and (checkpoint / STATE_FILE).is_file()
    resumed = recording_trainer(make_args(tmp_path / "run", **overrides), train, model=make_model(seed=123))
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for epoch, indices in full.seen.items():
        assert first.seen.get(epoch, []) + resumed.seen.get(epoch, []) == indices, epoch
    other = recording_trainer(make_args(tmp_path / "run", **{**overrides, "prune_fraction": 0.25}), train)
    with pytest.raises(ValueError, match="`pruning`"):
        other.train(resume_from_checkpoint=str(checkpoint))


class NoPerSampleLoss(TinyBackbone):
    def forward(self, *args, **kwargs):
        return {"loss": super().forward(*args, **kwargs)["loss"]}


def test_pruning_needs_per_sample_losses_and_a_dataset(tmp_path):
    args = make_args(tmp_path, **NO_CURRICULUM, **PRUNED)
    trainer = recording_trainer(args, make_pairs(40, difficulty=False), model=NoPerSampleLoss())
    with pytest.raises(ValueError, match=r"`prune_fraction=0.5` needs each pair's training loss: NoPerSampleLoss"):
        trainer.train()
    rows = make_pairs(40, difficulty=False).to_list()
    trainer = recording_trainer(args, rows)
    with pytest.raises(TypeError, match="`prune_fraction` needs a `datasets.Dataset` train_dataset, got list"):
        trainer.train()
