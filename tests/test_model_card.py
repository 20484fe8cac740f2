"""Model cards of CLASS checkpoints: metadata, model-index round trip, savings, template errors."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from class_hf.model_card import (
    CLASS_CITATION,
    build_model_card,
    eval_results_from_metrics,
    metrics_from_model_card,
    savings_lines,
)

METRICS = {
    "split": {
        "t2m_hits@1": 0.5,
        "t2m_hits@10": 0.75,
        "t2m_mrr": 0.61,
        "t2m_mean_rank": 3.25,
        "m2t_hits@1": 0.4,
        "m2t_hits@10": 0.7,
        "m2t_mrr": 0.52,
        "m2t_mean_rank": 4.5,
    },
    "all": {"t2m_hits@1": 0.2, "t2m_mrr": 0.31, "m2t_hits@1": 0.1, "m2t_mrr": 0.22},
}
SUMMARY = {
    "num_samples": 200,
    "num_epochs": 4,
    "full_sample_passes": 800,
    "samples_seen": 500,
    "sample_pass_saving": 0.375,
    "optimizer_steps": 16,
    "planned_optimizer_steps": 16,
    "train_seconds": 12.0,
    "scoring_seconds": 3.0,
    "eval_seconds": 1.0,
}


def _card(**kwargs):
    values = dict(
        model_type="class_orma",
        test_metrics=METRICS,
        model_id="org/class-orma",
        base_model="allenai/scibert_scivocab_uncased",
        dataset_id="org/chebi20",
        hyperparameters={"learning_rate": 1e-4, "num_train_epochs": 60},
        class_settings={"curriculum": "easy_first", "pacing_stages": 4},
        curriculum_summary=SUMMARY,
        scoring_info={"source": "warmup", "seconds": 3.0},
        num_test_pairs=3301,
    )
    values.update(kwargs)
    return build_model_card(**values)


def test_card_parses_back_with_its_metadata_and_every_metric(tmp_path):
    path = tmp_path / "README.md"
    _card().save(path)
    card = ModelCard.load(path)
    assert card.data.library_name == "class-hf"
    assert {"class-hf", "curriculum-learning", "orma"} <= set(card.data.tags)
    assert card.data.datasets == ["org/chebi20"]
    assert card.data.base_model == "allenai/scibert_scivocab_uncased"
    assert metrics_from_model_card(path) == METRICS
    assert metrics_from_model_card(card) == METRICS
    text = card.text
    assert "arXiv:2502.11633" in text and "Optimal Transport-Based Multi-Grained" in text  # CLASS + backbone cited
    assert "| split | text→molecule | 50.00 |" in text  # the results table, in percent
    assert "500 of the 800" in text and "37.5% fewer" in text  # sample-pass saving
    assert "`learning_rate` | 0.0001" in text and "`curriculum` | easy_first" in text


def test_local_names_stay_out_of_hub_metadata():
    card = _card(base_model="./runs/demo", dataset_id="chebi-20")
    assert card.data.base_model is None
    assert card.data.datasets is None
    assert metrics_from_model_card(card) == METRICS  # the results are kept under the plain dataset name


def test_both_pools_of_a_direction_stay_apart_in_the_model_index():
    results = eval_results_from_metrics(METRICS, dataset_id="org/chebi20", dataset_name="ChEBI-20")
    assert len(results) == sum(len(m) for m in METRICS.values())
    mrr = {(r.task_type, r.metric_config): r.metric_value for r in results if r.metric_type == "mrr"}
    assert mrr == {
        ("text-to-molecule-retrieval", "pool-split"): 0.61,
        ("text-to-molecule-retrieval", "pool-all"): 0.31,
        ("molecule-to-text-retrieval", "pool-split"): 0.52,
        ("molecule-to-text-retrieval", "pool-all"): 0.22,
    }


def test_a_wall_clock_saving_is_only_claimed_against_a_measured_baseline():
    without = savings_lines(SUMMARY, {"source": "warmup"})
    assert not any("less time" in line for line in without)
    assert any("needs a baseline run" in line for line in without)
    with_baseline = savings_lines(SUMMARY, {"source": "warmup"}, baseline={"train_seconds": 30.0})
    assert any("50.0% less time" in line for line in with_baseline)  # 1 - (12 + 3) / 30


def test_a_card_needs_measured_results_and_a_template(tmp_path):
    with pytest.raises(ValueError, match="measured results"):
        _card(test_metrics={})
    with pytest.raises(FileNotFoundError, match="template_path"):
        _card(template_path=tmp_path / "missing.md")
    template = tmp_path / "mini.md"
    template.write_text("---\n{{ card_data }}\n---\n\n# {{ title }}\n\n{{ class_citation }}\n")
    card = _card(template_path=template)
    assert card.text.strip().startswith("# CLASS (ORMA): org/class-orma")
    assert CLASS_CITATION in card.text
