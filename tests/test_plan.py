"""The curriculum plan and the batch stream: exact coverage of every pool on any number of processes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard

from class_hf.curriculum.pacing import get_pacing, planned_optimizer_steps
from class_hf.curriculum.plan import CurriculumPlan, balanced_batch_sizes, paced_batch_size
from class_hf.curriculum.sampler import CurriculumBatchSampler, CurriculumSampler


@pytest.mark.parametrize("pool", [1, 7, 11, 42, 100])
@pytest.mark.parametrize(("batch", "per_step"), [(4, 1), (3, 2), (5, 4), (2, 6)])
def test_balanced_batches_cover_the_pool_in_whole_steps(pool, batch, per_step):
    if pool < per_step * math.ceil(pool / (batch * per_step)):
        with pytest.raises(ValueError, match="too few"):
            balanced_batch_sizes(pool, batch, per_step)
        return
    sizes = balanced_batch_sizes(pool, batch, per_step)
    assert sum(sizes) == pool
    assert len(sizes) == math.ceil(pool / (batch * per_step)) * per_step
    assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_drop_last_keeps_full_batches_only():
    assert balanced_batch_sizes(42, 4, 2, drop_last=True) == [4] * 10
    with pytest.raises(ValueError, match="too few"):
        balanced_batch_sizes(7, 4, 2, drop_last=True)


@pytest.mark.parametrize(
    ("world", "accumulation", "drop_last"), [(1, 1, False), (2, 1, False), (2, 3, False), (3, 2, True)]
)
def test_planned_steps_are_the_trainers_count_for_as_many_batches(world, accumulation, drop_last):
    """ceil(P / (B W GA)) equals the Trainer's ceil(ceil(ceil(P / B) / W) / GA) for the same pools."""
    pacing = get_pacing("staged")
    plan = CurriculumPlan.build(
        500, pacing, 8, batch_size=7, world_size=world, gradient_accumulation_steps=accumulation, drop_last=drop_last
    )
    for pool, steps in zip(plan.pool_sizes, plan.updates, strict=True):
        batches = (pool // 7) // world if drop_last else math.ceil(math.ceil(pool / 7) / world)
        assert steps == (batches // accumulation if drop_last else math.ceil(batches / accumulation))
    assert plan.updates == planned_optimizer_steps(500, pacing, 8, 7, world, accumulation, drop_last)


def test_steps_map_to_epochs():
    plan = CurriculumPlan.build(40, get_pacing("staged"), 4, batch_size=4)  # pools 10/20/30/40
    assert plan.updates == [3, 5, 8, 10]
    assert [plan.epoch_of_step(s) for s in (0, 2, 3, 7, 8, 25, 99)] == [0, 0, 1, 1, 2, 3, 3]
    assert (plan.first_step(2), plan.end_step(2)) == (8, 16)
    assert plan.epoch_position(8) == 2.0 and plan.epoch_position(12) == 2.5 and plan.epoch_position(26) == 4.0
    assert plan.samples_until(8) == 30 and plan.samples_until(26) == plan.sample_passes == 100
    assert plan.samples_until(10) == 30 + sum(plan.batch_sizes(2)[:2])
    assert CurriculumPlan.from_dict(plan.to_dict()) == plan


def test_a_paced_batch_size_keeps_the_steps_of_a_full_epoch_and_the_sample_passes():
    pacing = get_pacing("staged")  # pools 1309/2618/3927/5235 of 5235
    fixed = CurriculumPlan.build(5235, pacing, 8, batch_size=256)
    paced = CurriculumPlan.build(5235, pacing, 8, batch_size=256, pace_batch_size=True)
    assert paced.epoch_batch_sizes == [64, 64, 128, 128, 192, 192, 256, 256]
    assert fixed.updates == [6, 6, 11, 11, 16, 16, 21, 21] and paced.updates == [21] * 8
    assert paced.sample_passes == fixed.sample_passes and paced.pool_sizes == fixed.pool_sizes
    for epoch in range(8):
        sizes = paced.batch_sizes(epoch)
        assert sum(sizes) == paced.pool_sizes[epoch] and max(sizes) <= paced.epoch_batch_sizes[epoch]
    assert planned_optimizer_steps(5235, pacing, 8, 256, pace_batch_size=True) == paced.updates
    assert CurriculumPlan.from_dict(paced.to_dict()) == paced
    assert "per-device batch sizes [64, 64, 128" in paced.describe()
    # the baseline's plan (every epoch the whole set) keeps its batch size
    baseline = CurriculumPlan.build(100, pacing, 4, batch_size=8, full_data=True, pace_batch_size=True)
    assert baseline.epoch_batch_sizes is None
    # at least one negative, never above the batch size
    assert [paced_batch_size(8, f) for f in (0.01, 0.25, 0.3, 1.0)] == [2, 2, 3, 8]
    with pytest.raises(ValueError, match="one batch size per epoch"):
        CurriculumPlan.from_dict({**paced.to_dict(), "epoch_batch_sizes": [64]})
    with pytest.raises(ValueError, match="paced to 2 in this epoch"):
        CurriculumPlan.build(6, pacing, 4, batch_size=4, world_size=4, pace_batch_size=True)
    # pools paced by cost: the batch follows the pool's share of the pairs, so every epoch keeps its steps
    pools = [700] * 2 + [5235] * 6
    by_cost = CurriculumPlan.build(5235, pacing, 8, batch_size=256, pace_batch_size=True, pool_sizes=pools)
    assert by_cost.epoch_batch_sizes[:2] == [35, 35] and by_cost.updates == [20, 20] + [21] * 6
    with pytest.raises(ValueError, match=r"one size in \[1, 5235\] per epoch \(8\)"):
        CurriculumPlan.build(5235, pacing, 8, batch_size=256, pool_sizes=[700] * 7)


def test_a_pool_too_small_for_the_processes_names_the_epoch():
    with pytest.raises(ValueError, match="Epoch 0 of the curriculum.*pacing_start_fraction"):
        CurriculumPlan.build(6, get_pacing("staged"), 4, batch_size=4, world_size=4)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("even_batches", [True, False])
def test_accelerate_sharding_of_the_stream_covers_every_pool_exactly_once(world, even_batches):
    difficulty = np.random.default_rng(0).random(43)
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=3)
    plan = CurriculumPlan.build(43, sampler.pacing, 4, batch_size=3, world_size=world, gradient_accumulation_steps=2)
    stream = CurriculumBatchSampler(sampler, plan)
    shards = [list(BatchSamplerShard(stream, world, rank, even_batches=even_batches)) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(stream) // world
    start = 0
    for epoch in range(4):
        count = plan.updates[epoch] * plan.batches_per_step // world  # batches per process in this epoch
        seen = [i for shard in shards for batch in shard[start : start + count] for i in batch]
        start += count
        assert sorted(seen) == sorted(sampler.indices(epoch).tolist()), epoch  # each pool sample exactly once
        assert len(seen) == len(set(seen)) == plan.pool_sizes[epoch]


def test_the_stream_calls_before_epoch_before_drawing_each_epoch():
    calls = []
    sampler = CurriculumSampler(np.arange(10.0), "staged", num_epochs=2)
    plan = CurriculumPlan.build(10, sampler.pacing, 2, batch_size=2)
    stream = CurriculumBatchSampler(sampler, plan, before_epoch=calls.append)
    batches = iter(stream)
    next(batches)
    assert calls == [0]
    list(batches)
    assert calls == [0, 1]


def test_confusion_batches_place_every_pair_once_and_group_neighbours():
    from class_hf.curriculum.sampler import compose_confusion_batches

    rng = np.random.default_rng(0)
    n = 60
    neighbors = np.array([rng.permutation([j for j in range(n) if j != i])[:6] for i in range(n)])
    order = rng.permutation(48).tolist()  # a pool of 48 of the 60 pairs
    sizes = [8] * 6
    batches = compose_confusion_batches(order, sizes, neighbors, share=0.5)
    assert [len(b) for b in batches] == sizes
    assert sorted(i for b in batches for i in b) == sorted(order)
    first = batches[0]
    assert first[0] == order[0]  # the seed: the first pair of the order
    pool = set(order)
    expected = [int(j) for j in neighbors[order[0]] if j in pool][:3]
    assert first[1 : 1 + len(expected)] == expected  # its neighbours in the pool, most confusing first
    assert compose_confusion_batches(order, sizes, neighbors, share=0.0)[0][0] == order[0]
    with pytest.raises(ValueError, match="sum to"):
        compose_confusion_batches(order, [8] * 5, neighbors)


def test_confusing_neighbors_are_the_highest_scores_either_way():
    import torch

    from class_hf.evaluation.retrieval import confusing_neighbors

    torch.manual_seed(0)
    text, mol = torch.randn(30, 8), torch.randn(30, 8)
    k = 4
    got = confusing_neighbors(text, mol, k, chunk_size=7)
    t, m = torch.nn.functional.normalize(text, dim=1), torch.nn.functional.normalize(mol, dim=1)
    both = torch.maximum(t @ m.T, (t @ m.T).T)
    both.fill_diagonal_(-torch.inf)
    assert torch.equal(got, both.topk(k, dim=1).indices)
