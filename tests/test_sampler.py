"""CurriculumSampler: pools follow the pacing, deterministic order, sharding across ranks, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset
from torch.utils.data import BatchSampler, RandomSampler

from class_hf.curriculum.pacing import get_pacing, pool_size
from class_hf.curriculum.sampler import CurriculumOrder, CurriculumSampler, strata_labels

N = 103


@pytest.fixture()
def difficulty():
    rng = np.random.default_rng(0)
    values = rng.random(N)
    values[10:20] = 0.5  # a tie group: broken by a permutation drawn from the seed
    return values


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_not_a_random_sampler(difficulty):
    # accelerate replaces RandomSampler subclasses by its SeedableRandomSampler.
    assert not isinstance(CurriculumSampler(difficulty, num_epochs=4), RandomSampler)


def test_easy_first_pools_follow_the_pacing(difficulty):
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=8, seed=3)
    pacing = get_pacing("staged")
    previous = set()
    for epoch in range(8):
        order = _epoch(sampler, epoch)
        size = pool_size(pacing.fraction(epoch, 8), N)
        assert len(order) == len(sampler) == size
        assert len(set(order)) == size, "an index repeats within an epoch"
        assert sorted(difficulty[order]) == sorted(difficulty)[:size], "not the easiest pairs"
        hardest_in = max(difficulty[order])
        outside = np.setdiff1d(np.arange(N), order)
        assert outside.size == 0 or hardest_in <= difficulty[outside].min()
        assert previous <= set(order), "pools must be nested"
        previous = set(order)
    assert [len(_epoch(sampler, e)) for e in range(8)] == [26, 26, 52, 52, 78, 78, 103, 103]


def test_ties_broken_by_the_seed_not_by_row():
    difficulty = np.array([0.5, 0.1, 0.5, 0.5, 0.9, 0.5])
    half = lambda _epoch, _num_epochs: 0.5  # noqa: E731
    for seed in range(5):
        easy = sorted(CurriculumSampler(difficulty, half, num_epochs=1, seed=seed))
        assert len(easy) == 3 and 1 in easy and set(easy) <= {0, 1, 2, 3, 5}  # 0.1, then two of the 0.5 ties
        assert easy == sorted(CurriculumSampler(difficulty, half, num_epochs=1, seed=seed)), "not reproducible"
        hard = sorted(CurriculumSampler(difficulty, half, num_epochs=1, seed=seed, order="hard_first"))
        assert len(hard) == 3 and 4 in hard and set(hard) <= {0, 2, 3, 4, 5}
    # a scorer that ranks most pairs first: the early pool is a seeded draw from the tie, not the file's first rows
    tied = np.zeros(1000)
    tied[900:] = np.arange(1, 101)
    quarter = lambda _epoch, _num_epochs: 0.25  # noqa: E731
    pools = [sorted(CurriculumSampler(tied, quarter, num_epochs=1, seed=seed)) for seed in (0, 1)]
    assert pools[0] != pools[1]
    for pool in pools:
        assert len(pool) == 250 and max(pool) < 900
        assert 300 < np.mean(pool) < 600, "the tied pairs were not drawn across the file"


def test_checkpoint_without_tie_break_resumes_with_ties_broken_by_row():
    difficulty = np.array([0.5, 0.1, 0.5, 0.5, 0.9, 0.5])
    half = lambda _epoch, _num_epochs: 0.5  # noqa: E731
    sampler = CurriculumSampler(difficulty, half, num_epochs=1, seed=4)
    state = sampler.state_dict()
    assert state["tie_break"] == "seed"
    del state["tie_break"]  # as written before ties were broken by the seed
    sampler.load_state_dict(state)
    assert sorted(sampler) == [0, 1, 2]  # 0.1, then the first 0.5 ties by row
    assert sampler.state_dict()["tie_break"] == "row"


def test_hard_first_takes_the_hardest(difficulty):
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, order=CurriculumOrder.HARD_FIRST)
    order = _epoch(sampler, 0)
    assert len(order) == 26
    assert min(difficulty[order]) >= np.sort(difficulty)[-26]


def test_random_subset_same_sizes_redrawn_each_epoch(difficulty):
    easy = CurriculumSampler(difficulty, "staged", num_epochs=8, seed=1)
    rand = CurriculumSampler(difficulty, "staged", num_epochs=8, seed=1, order="random_subset")
    sizes = [len(_epoch(rand, e)) for e in range(8)]
    assert sizes == [len(_epoch(easy, e)) for e in range(8)]
    first, second = set(_epoch(rand, 0)), set(_epoch(rand, 1))
    assert first != second, "the random subset is re-drawn every epoch"
    assert set(_epoch(rand, 0)) == first, "and deterministic per (seed, epoch)"
    assert first != set(_epoch(easy, 0))
    fixed = CurriculumSampler(
        difficulty, "staged", num_epochs=8, seed=1, order="random_subset", redraw_random_subset=False
    )
    assert set(_epoch(fixed, 0)) == set(_epoch(fixed, 1)) and set(_epoch(fixed, 0)) < set(_epoch(fixed, 2))


def test_none_is_all_samples_in_random_order(difficulty):
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, order="none", seed=5)
    orders = [_epoch(sampler, e) for e in range(4)]
    for order in orders:
        assert sorted(order) == list(range(N))
    assert orders[0] != orders[1] and orders[0] != list(range(N))


def test_order_reproducible_from_seed_and_epoch(difficulty):
    a = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=7)
    b = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=7)
    c = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=8)
    # Different call histories, same (seed, epoch) -> same order.
    for e in (3, 0, 2):
        _epoch(a, e)
    assert [_epoch(a, e) for e in range(4)] == [_epoch(b, e) for e in range(4)]
    assert _epoch(a, 3) != _epoch(c, 3)
    # The shuffle does not touch the global RNG.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _epoch(a, 1)
    assert torch.equal(torch.rand(3), expected)
    # Epoch orders differ (reshuffled every epoch) even when the pool is the same.
    d = CurriculumSampler(difficulty, "staged", num_epochs=8, seed=7)
    assert _epoch(d, 0) != _epoch(d, 1) and set(_epoch(d, 0)) == set(_epoch(d, 1))


def test_set_epoch_is_idempotent(difficulty):
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=2)
    sampler.set_epoch(2)
    first = list(sampler)
    sampler.set_epoch(2)
    sampler.set_epoch(2)
    assert list(sampler) == first and list(sampler) == first
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)


def test_datasets_column_is_materialised_once():
    ds = Dataset.from_dict({"difficulty": [0.3, 0.1, 0.2, 0.9]})
    sampler = CurriculumSampler(ds["difficulty"], lambda _epoch, _num_epochs: 0.5, num_epochs=1)
    assert isinstance(sampler.difficulty, np.ndarray)
    assert sorted(sampler) == [1, 2]
    with pytest.raises(ValueError, match="not finite"):
        CurriculumSampler([0.1, float("nan")], num_epochs=1)


@pytest.mark.parametrize("num_samples", [40, 43])
def test_two_simulated_ranks_get_disjoint_batches_covering_the_pool(num_samples):
    difficulty = np.random.default_rng(1).random(num_samples)
    batch_size, world = 4, 2
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=11)
    shards = [
        BatchSamplerShard(BatchSampler(sampler, batch_size, drop_last=False), world, rank) for rank in range(world)
    ]
    for epoch in range(4):
        sampler.set_epoch(epoch)
        pool = list(sampler)
        per_rank = [list(shard) for shard in shards]
        assert len(per_rank[0]) == len(per_rank[1]) == len(shards[0]), "every rank runs the same number of batches"
        seen = [i for batches in per_rank for batch in batches for i in batch]
        assert set(seen) == set(pool), "together the ranks cover the pool"
        n_full = len(pool) // (batch_size * world) * batch_size * world
        if len(pool) % (batch_size * world) == 0:
            assert sorted(seen) == sorted(pool), "no sample twice when the pool divides into global batches"
        else:
            # accelerate's even_batches completes the last round from the start of the epoch's order.
            assert len(seen) == len(per_rank[0]) * batch_size * world > len(pool)
        # Batches are disjoint between ranks over the first full rounds.
        rank_sets = [{i for batch in batches for i in batch} for batches in per_rank]
        full_rounds = n_full // (batch_size * world)
        first_rounds = [{i for batch in batches[:full_rounds] for i in batch} for batches in per_rank]
        assert not (first_rounds[0] & first_rounds[1])
        assert rank_sets[0] | rank_sets[1] == set(pool)
        # Interleaving the ranks' batches reproduces the single-process order.
        interleaved = [i for pair in zip(*per_rank, strict=False) for batch in pair for i in batch]
        assert interleaved[: len(pool)] == pool


def test_resume_restores_the_order(difficulty):
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=9)
    sampler.set_epoch(2)
    expected = list(sampler)
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["seed"] == 9

    fresh = CurriculumSampler(difficulty, "staged", num_epochs=4, seed=123)
    fresh.load_state_dict(state)
    assert list(fresh) == expected
    fresh.set_epoch(3)
    sampler.set_epoch(3)
    assert list(fresh) == list(sampler)

    other = CurriculumSampler(difficulty[::-1].copy(), "staged", num_epochs=4)
    with pytest.raises(ValueError, match="difficulty_sha1"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="num_epochs"):
        CurriculumSampler(difficulty, "staged", num_epochs=5).load_state_dict(state)


def test_set_difficulty_keeps_size(difficulty):
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4)
    before = _epoch(sampler, 0)
    sampler.set_difficulty(-difficulty)
    after = _epoch(sampler, 0)
    assert set(after) != set(before)
    with pytest.raises(ValueError, match="built for"):
        sampler.set_difficulty(difficulty[:5])


# ---------------------------------------------------------------------------------------------- pacing by cost
def test_unit_costs_give_the_pools_of_pacing_by_count(difficulty):
    for order in ("easy_first", "hard_first", "random_subset"):
        by_count = CurriculumSampler(difficulty, "root", num_epochs=6, seed=2, order=order)
        by_cost = CurriculumSampler(difficulty, "root", num_epochs=6, seed=2, order=order, costs=np.ones(N))
        for epoch in range(6):
            assert _epoch(by_cost, epoch) == _epoch(by_count, epoch), (order, epoch)


def test_pools_paced_by_cost_hold_their_share_of_the_cost(difficulty):
    rng = np.random.default_rng(1)
    costs = rng.integers(5, 60, size=N).astype(float)
    costs[np.argsort(difficulty)[:20]] = 200.0  # the easiest pairs are the expensive ones, as on ChEBI-20
    pacing = get_pacing("staged")
    for order in ("easy_first", "hard_first", "random_subset"):
        by_cost = CurriculumSampler(difficulty, pacing, num_epochs=4, seed=0, order=order, costs=costs)
        by_count = CurriculumSampler(difficulty, pacing, num_epochs=4, seed=0, order=order)
        for epoch in range(4):
            pool = by_cost.pool(epoch)
            share = pacing.fraction(epoch, 4)
            ranked = by_cost._ranked(epoch)
            assert np.array_equal(pool, ranked[: len(pool)]), "not a prefix of the epoch's order"
            # the shortest prefix reaching the share: one pair fewer falls short of it
            assert costs[pool].sum() >= share * costs.sum() - 1e-9
            assert costs[pool[:-1]].sum() < share * costs.sum()
            assert len(_epoch(by_cost, epoch)) == by_cost.pool_size(epoch) == len(pool)
        if order == "easy_first":  # 20 expensive easy pairs hold most of a quarter of the cost
            assert by_cost.pool_size(0) < by_count.pool_size(0) == 26
    assert CurriculumSampler(difficulty, pacing, num_epochs=4, costs=costs).pool_size(3) == N


def test_costs_are_checked_and_part_of_the_checkpoint(difficulty):
    with pytest.raises(ValueError, match=r"must be positive; 2 rows are not \(first: row 3"):
        CurriculumSampler(difficulty, costs=np.where(np.isin(np.arange(N), [3, 7]), 0.0, 1.0))
    with pytest.raises(ValueError, match=r"not finite in 1 rows \(first: row 4\)"):
        CurriculumSampler(difficulty, costs=np.where(np.arange(N) == 4, np.nan, 1.0))
    with pytest.raises(ValueError, match="has 5 values but the training set has 103"):
        CurriculumSampler(difficulty, costs=np.ones(5))
    costs = np.arange(1, N + 1, dtype=float)
    state = CurriculumSampler(difficulty, "staged", num_epochs=4, costs=costs).state_dict()
    resumed = CurriculumSampler(difficulty, "staged", num_epochs=4, costs=costs)
    resumed.load_state_dict(state)
    for other in (None, costs[::-1].copy()):  # paced by count, or by other costs
        with pytest.raises(ValueError, match="costs_sha1"):
            CurriculumSampler(difficulty, "staged", num_epochs=4, costs=other).load_state_dict(state)
    by_count = CurriculumSampler(difficulty, "staged", num_epochs=4).state_dict()
    with pytest.raises(ValueError, match="costs_sha1"):
        CurriculumSampler(difficulty, "staged", num_epochs=4, costs=costs).load_state_dict(by_count)


# ---------------------------------------------------------------------------------------------- stratified pools
def test_stratified_pools_take_each_strata_share_easiest_first(difficulty):
    strata = np.arange(N) % 3  # 35 / 34 / 34 samples
    strata[np.argsort(difficulty)[:30]] = 0  # the 30 easiest are all in stratum 0, as large molecules on ChEBI-20
    sizes = np.bincount(strata)
    pacing = get_pacing("staged")
    for order, sign in (("easy_first", 1), ("hard_first", -1)):
        sampler = CurriculumSampler(difficulty, pacing, num_epochs=4, seed=1, order=order, strata=strata)
        plain = CurriculumSampler(difficulty, pacing, num_epochs=4, seed=1, order=order)
        for epoch in range(4):
            pool = sampler.pool(epoch)
            assert len(pool) == plain.pool_size(epoch) == len(_epoch(sampler, epoch))
            share = len(pool) / N
            for code in range(3):
                members = np.flatnonzero(strata == code)
                taken = np.intersect1d(pool, members)
                assert abs(len(taken) - share * sizes[code]) <= 1, (order, epoch, code)
                # within its stratum, a pool holds the easiest (hardest) members (ties: any of the tied ones)
                ranked = np.sort(sign * difficulty[members])
                assert np.array_equal(np.sort(sign * difficulty[taken]), ranked[: len(taken)])
        if order == "easy_first":  # unstratified, the first pool is all stratum 0; stratified, its share of the data
            assert np.all(strata[plain.pool(0)] == 0)
            assert abs(np.mean(strata[sampler.pool(0)] == 0) - sizes[0] / N) < 0.05


def test_one_stratum_and_random_subsets_are_unchanged(difficulty):
    for order in ("easy_first", "hard_first", "random_subset"):
        plain = CurriculumSampler(difficulty, "root", num_epochs=5, seed=4, order=order)
        one = CurriculumSampler(difficulty, "root", num_epochs=5, seed=4, order=order, strata=["a"] * N)
        for epoch in range(5):
            assert _epoch(one, epoch) == _epoch(plain, epoch), (order, epoch)
    strata = np.arange(N) % 2
    plain = CurriculumSampler(difficulty, "root", num_epochs=5, seed=4, order="random_subset")
    split = CurriculumSampler(difficulty, "root", num_epochs=5, seed=4, order="random_subset", strata=strata)
    assert _epoch(split, 0) == _epoch(plain, 0)


def test_strata_are_checked_and_part_of_the_checkpoint(difficulty):
    with pytest.raises(ValueError, match=r"`strata` is missing in 1 rows \(first: row 5\)"):
        CurriculumSampler(difficulty, strata=[None if i == 5 else 1 for i in range(N)])
    with pytest.raises(ValueError, match="has 4 values but the training set has 103"):
        CurriculumSampler(difficulty, strata=[0, 1, 0, 1])
    strata = np.arange(N) % 4
    state = CurriculumSampler(difficulty, "staged", num_epochs=4, strata=strata).state_dict()
    CurriculumSampler(difficulty, "staged", num_epochs=4, strata=strata).load_state_dict(state)
    for other in (None, np.arange(N) % 3):
        with pytest.raises(ValueError, match="strata_sha1"):
            CurriculumSampler(difficulty, "staged", num_epochs=4, strata=other).load_state_dict(state)


def test_strata_labels_bin_numbers_by_quantile_and_keep_categories():
    atoms = [3, 3, 3, 3, 5, 8, 8, 9, 12, 20, 40, 41]
    codes = strata_labels(atoms, 4)
    assert codes.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert strata_labels([7.0] * 6, 4).tolist() == [0] * 6  # equal values share one bin
    assert strata_labels(atoms, 1).tolist() == [0] * 12
    assert strata_labels(["b", "a", "b", "c"], 4).tolist() == [1, 0, 1, 2]
    assert strata_labels([True, False, True], 2).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match=r"'num_nodes'. is missing in 1 rows \(first: row 2\)"):
        strata_labels([1.0, 2.0, float("nan")], 2, "training column 'num_nodes'")
    with pytest.raises(ValueError, match="`num_strata` must be a positive integer"):
        strata_labels(atoms, 0)


def test_strata_compose_with_costs_and_a_new_difficulty(difficulty):
    strata = np.arange(N) % 2
    costs = 1.0 + strata * 4.0  # stratum 1 costs five times as much
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=4, costs=costs, strata=strata)
    pool = sampler.pool(1)
    assert np.array_equal(pool, sampler._ranked(1)[: len(pool)])
    assert costs[pool].sum() >= 0.5 * costs.sum() > costs[pool[:-1]].sum()
    sampler.set_difficulty(-difficulty)  # a refresh: the ranks within each stratum follow the new values
    for code in (0, 1):
        members = np.flatnonzero(strata == code)
        taken = np.intersect1d(sampler.pool(0), members)
        assert np.array_equal(np.sort(-difficulty[taken]), np.sort(-difficulty[members])[: len(taken)])
