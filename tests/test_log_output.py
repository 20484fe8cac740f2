"""Training output people read: one line of numbers per log, a quiet warm-up, warnings once, readable plots."""

from __future__ import annotations

import logging
import warnings

import pytest
from transformers import PrinterCallback, ProgressCallback

from class_hf.data import MoleculeTextCollator, featurize_molecules, load_chebi20
from class_hf.log_output import ReadableLogCallback, ReadableProgressCallback, format_log_line
from class_hf.models.configuration_dual_encoder import DualEncoderConfig
from class_hf.models.modeling_dual_encoder import DualEncoderModel
from class_hf.trainer import CurriculumTrainer
from class_hf.training_args import CurriculumTrainingArguments


@pytest.fixture(scope="module")
def pairs(chebi20_sample_dir):
    rows = load_chebi20(chebi20_sample_dir / "orma_sample.csv", splits="test")["test"].select(range(48))
    return featurize_molecules(rows, desc=None)


def _trainer(pairs, tokenizer, config, tmp_path, **args) -> CurriculumTrainer:
    model = DualEncoderModel(DualEncoderConfig(text_config=config, gnn_hidden_size=8, projection_dim=8))
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2, learning_rate=1e-3,
        difficulty_source="warmup", eval_strategy="epoch", save_strategy="no", report_to="none", use_cpu=True,
        logging_steps=1,
    )  # fmt: skip
    arguments = CurriculumTrainingArguments(**{**settings, **args})
    return CurriculumTrainer(
        model=model, args=arguments, train_dataset=pairs.select(range(32)), eval_dataset=pairs.select(range(32, 48)),
        data_collator=MoleculeTextCollator(tokenizer, max_length=32), processing_class=tokenizer,
    )  # fmt: skip


def test_a_log_is_one_line_of_numbers():
    line = format_log_line(
        {"loss": 3.21034, "grad_norm": 1.5, "learning_rate": 0.0003, "epoch": 1.5234, "curriculum/stage": 1},
        step=40,
        max_steps=504,
    )
    assert line == (
        "[step 40/504 · epoch 1.52] loss 3.2103 · grad_norm 1.5 · learning_rate 3.000e-04 · curriculum/stage 1"
    )
    evaluation = format_log_line({"eval_loss": 2.2, "eval_mrr": 0.41234, "eval_runtime": 3.14, "epoch": 4.0}, step=84)
    assert evaluation == "[step 84 · epoch 4] eval: loss 2.2 · mrr 0.4123 · runtime 3.14 s"
    summary = format_log_line({"train_runtime": 312.4, "train_loss": 2.1, "total_flos": 1e12, "epoch": 24.0})
    assert summary == "[epoch 24] train: loss 2.1 · runtime 312.4 s"
    assert "{" not in line + evaluation + summary and "'" not in line + evaluation + summary


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_the_trainer_prints_readable_lines_with_or_without_progress_bars(
    disable_tqdm, pairs, tiny_tokenizer, tiny_bert_config, tmp_path, capsys
):
    trainer = _trainer(pairs, tiny_tokenizer, tiny_bert_config, tmp_path, disable_tqdm=disable_tqdm)
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert PrinterCallback not in kinds and ProgressCallback not in kinds
    assert (ReadableLogCallback in kinds) == disable_tqdm and (ReadableProgressCallback in kinds) == (not disable_tqdm)
    trainer.train()
    captured = capsys.readouterr()
    out = captured.out if disable_tqdm else captured.out + captured.err  # tqdm writes above the bar on stderr
    lines = [line for line in out.splitlines() if line.startswith("[step")]
    assert any("] loss " in line for line in lines) and any("] eval: " in line for line in lines)
    # One training summary: the warm-up scorer's own Trainer runs quiet.
    assert sum("] train: " in line and " runtime " in line for line in lines) == 1
    assert "{'" not in out


def test_the_warmup_scorer_prints_nothing(pairs, tiny_tokenizer, tiny_bert_config, capsys):
    from class_hf.curriculum.difficulty import warm_up_copy

    model = DualEncoderModel(DualEncoderConfig(text_config=tiny_bert_config, gnn_hidden_size=8, projection_dim=8))
    collator = MoleculeTextCollator(tiny_tokenizer, max_length=32)
    warm_up_copy(model, pairs, collator, fraction=0.5, epochs=1, learning_rate=1e-3, batch_size=8, show_progress=False)
    captured = capsys.readouterr()
    assert "train_runtime" not in captured.out + captured.err and "runtime" not in captured.out


def test_no_pin_memory_warning_per_epoch_on_cpu(pairs, tiny_tokenizer, tiny_bert_config, tmp_path):
    # Without `use_cpu` (the recipes' default): no accelerator, so no pinned memory.
    trainer = _trainer(pairs, tiny_tokenizer, tiny_bert_config, tmp_path, disable_tqdm=True, use_cpu=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert not [w for w in caught if "pin_memory" in str(w.message)]


def test_orma_warns_once_per_process_for_all_its_copies(tiny_bert_config, caplog):
    import copy

    from class_hf.models import modeling_orma

    model = modeling_orma.OrmaModel(
        modeling_orma.OrmaConfig(text_config=tiny_bert_config, text_encoder_name_or_path=None, emb_dim=8)
    )
    key = "a test warning that cannot occur elsewhere"
    with caplog.at_level(logging.WARNING, logger="class_hf.models.modeling_orma"):
        for copy_ in (model, copy.deepcopy(model), copy.deepcopy(model)):  # the warm-up copy, the model, a reload
            copy_._warn_once(key, "once: %s", key)
    assert sum(key in r.getMessage() for r in caplog.records) == 1
