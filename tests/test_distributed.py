"""Two CPU processes (torchrun, gloo): the curriculum shards across ranks and the ranks stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from class_hf.curriculum.pacing import get_pacing, planned_optimizer_steps, pool_sizes

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)]
    proc = subprocess.run(
        [*command, str(out)], env=env, capture_output=True, text=True, timeout=240, cwd=SCRIPT.parents[2]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = {}
    for name in ("even", "uneven", "uneven_eval", "pruned"):
        results[name] = [json.loads((out / f"{name}-rank{r}.json").read_text()) for r in range(2)]
    return results


def _pools(result, order: str) -> list[list[int]]:
    difficulty = np.asarray(result["difficulty"])
    n = difficulty.size
    ranked = (
        np.argsort(difficulty, kind="stable") if order == "easy_first" else np.lexsort((np.arange(n), -difficulty))
    )
    return [sorted(ranked[:size].tolist()) for size in pool_sizes(n, get_pacing("staged"), 4)]


def test_two_ranks_see_each_pool_sample_exactly_once(ddp_results):
    ranks = ddp_results["even"]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["difficulty"] == ranks[1]["difficulty"]
    pools = _pools(ranks[0], "easy_first")
    for epoch, pool in enumerate(pools):
        a, b = ranks[0]["seen"][str(epoch)], ranks[1]["seen"][str(epoch)]
        assert len(a) == len(b) == len(pool) // 2
        assert not set(a) & set(b), f"epoch {epoch}: a sample went to both ranks"
        assert sorted(a + b) == pool, f"epoch {epoch}: the ranks together must cover the pool exactly once"


def test_ranks_end_with_identical_parameters_and_planned_steps(ddp_results):
    for name in ("even", "uneven", "uneven_eval"):  # the pruned run: its own test
        ranks = ddp_results[name]
        assert ranks[0]["checksum"] == ranks[1]["checksum"], name
        n = len(ranks[0]["difficulty"])
        planned = planned_optimizer_steps(n, get_pacing("staged"), 4, batch_size=3, world_size=2)
        for result in ranks:
            assert result["global_step"] == result["max_steps"] == sum(planned), name
            assert [h["optimizer_steps"] for h in result["history"]] == planned, name


@pytest.mark.parametrize("name", ["uneven", "uneven_eval"])
def test_uneven_pools_are_covered_exactly_once(ddp_results, name):
    """42 pairs, batch 3, 2 processes: pools 11/21/32/42 are not multiples of 6, and no sample repeats."""
    ranks = ddp_results[name]
    pools = _pools(ranks[0], "hard_first" if name == "uneven" else "easy_first")
    for epoch, pool in enumerate(pools):
        a, b = ranks[0]["seen"][str(epoch)], ranks[1]["seen"][str(epoch)]
        assert not set(a) & set(b), f"epoch {epoch}: a sample went to both ranks"
        assert sorted(a + b) == pool, f"epoch {epoch}: the ranks together must cover the pool exactly once"
        assert abs(len(a) - len(b)) <= len(pool) // 6 + 1  # the same number of batches, sizes differing by <= 1
        assert [h["samples_seen"] for h in ranks[0]["history"]][epoch] == len(pool)


def test_even_batches_off_with_evaluation_ends_with_one_evaluation_per_epoch(ddp_results):
    for rank in ddp_results["uneven_eval"]:
        assert [round(e["epoch"]) for e in rank["evaluations"]] == [1, 2, 3, 4]


def test_pruning_draws_the_same_pools_on_both_ranks_from_both_ranks_losses(ddp_results):
    ranks = ddp_results["pruned"]
    assert ranks[0]["pool_sizes"] == ranks[1]["pool_sizes"] == [42, 42, 32, 42]  # epoch 2 leaves 10 of 21 out
    losses = np.asarray(ranks[0]["losses"])
    assert np.isfinite(losses).all() and np.array_equal(losses, ranks[1]["losses"])  # gathered from both ranks
    learned = set(np.argsort(losses, kind="stable")[:21].tolist())
    for epoch, size in enumerate(ranks[0]["pool_sizes"]):
        a, b = ranks[0]["seen"][str(epoch)], ranks[1]["seen"][str(epoch)]
        assert not set(a) & set(b) and len(set(a) | set(b)) == len(a) + len(b) == size, epoch
    assert set(range(42)) - set(ranks[0]["seen"]["2"]) - set(ranks[1]["seen"]["2"]) <= learned
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    for result in ranks:  # 7 steps of 6 pairs over 42, 6 over 32
        assert [h["optimizer_steps"] for h in result["history"]] == [7, 7, 6, 7]
        assert result["global_step"] == result["max_steps"] == 27
