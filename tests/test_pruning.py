"""Pruning of learned pairs: which pairs an epoch leaves out, their weights, the losses it reads, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from class_hf.curriculum.pruning import PRUNING_FILE, LearnedPairPruning, check_pruning_values
from class_hf.curriculum.sampler import CurriculumSampler


def recorded(num_samples: int = 20, num_epochs: int = 10, fraction: float = 0.5, **kwargs) -> LearnedPairPruning:
    """A pruning whose epoch-0 losses rank the samples by index (sample 0 the best learned)."""
    pruning = LearnedPairPruning(num_samples, num_epochs, fraction, **kwargs)
    pruning.record(0, torch.arange(num_samples), torch.arange(num_samples, dtype=torch.float32))
    return pruning


def test_pruned_epochs_and_counts():
    pruning = LearnedPairPruning(20, num_epochs=16, fraction=0.5)  # anneal 0.125: the last 2 epochs whole
    assert pruning.last_pruned_epoch == 13
    assert [e for e in range(16) if pruning.prunes(e)] == list(range(2, 14))
    assert pruning.num_pruned(20, 1) == 0 and pruning.num_pruned(20, 14) == 0
    assert pruning.num_pruned(20, 2) == 5  # half of the easier half of 20
    assert pruning.num_pruned(9, 2) == 2  # floor(0.5 * ceil(9 / 2))
    assert LearnedPairPruning(20, 16, fraction=0.0).num_pruned(20, 5) == 0
    assert LearnedPairPruning(20, 16, fraction=0.5, anneal_fraction=0.0).last_pruned_epoch == 15


@pytest.mark.parametrize(
    ("fraction", "anneal", "match"),
    [(1.0, 0.1, "prune_fraction"), (-0.1, 0.1, "prune_fraction"), (float("nan"), 0.1, "prune_fraction"),
     (0.5, 1.5, "prune_anneal_fraction"), (0.5, float("nan"), "prune_anneal_fraction")],
)  # fmt: skip
def test_bad_values_name_the_argument(fraction, anneal, match):
    with pytest.raises(ValueError, match=match):
        check_pruning_values(fraction, anneal)


def test_only_the_learned_half_is_left_out_and_the_rest_of_it_is_weighted():
    pruning = recorded()
    pool = np.arange(20)[::-1]  # any order
    kept = pruning.prune(pool, epoch=2)
    left_out = np.setdiff1d(pool, kept)
    assert kept.size == 15 and left_out.size == 5
    assert set(left_out) <= set(range(10))  # from the 10 lowest losses only
    assert np.array_equal(kept, pool[np.isin(pool, kept)])  # pool order kept
    weights = pruning.batch_weights(2, torch.tensor(kept.tolist())).numpy()
    easy = kept < 10
    assert np.allclose(weights[easy], 2.0) and np.allclose(weights[~easy], 1.0)
    # The weighted count of the easier half is its size: its expected loss is that of the whole pool.
    assert weights[easy].sum() == 10
    assert pruning.batch_weights(3, torch.tensor([0, 1])) is None  # not drawn yet


def test_weights_outlive_later_draws_until_a_later_epoch_trains():
    pruning = recorded()
    pruning.record(1, torch.arange(20), torch.arange(20, dtype=torch.float32))
    kept = {epoch: pruning.prune(np.arange(20), epoch) for epoch in (2, 3, 4)}  # the loader may draw ahead
    batch = torch.tensor(kept[2].tolist())
    assert pruning.batch_weights(2, batch).max() == 2.0  # epoch 2's weights, although 3 and 4 were drawn since
    assert pruning.batch_weights(3, torch.tensor(kept[3].tolist())).max() == 2.0
    assert pruning.batch_weights(2, batch) is None  # forgotten once epoch 3 trains


def test_the_draw_is_a_function_of_seed_and_epoch():
    a, b = recorded(seed=1), recorded(seed=1)
    assert np.array_equal(a.prune(np.arange(20), 2), b.prune(np.arange(20), 2))
    draws = {tuple(recorded(seed=s).prune(np.arange(20), e)) for s in (0, 1) for e in (2, 3, 4)}
    assert len(draws) > 1


def test_losses_are_read_one_whole_epoch_late_and_unseen_pairs_count_as_hardest():
    pruning = recorded()
    # Epoch 1 says the high indices are learned; epoch 2 may not read it (it is drawn while epoch 1 trains).
    pruning.record(1, torch.arange(20), torch.arange(20, 0, -1, dtype=torch.float32))
    assert set(np.setdiff1d(np.arange(20), pruning.prune(np.arange(20), 2))) <= set(range(10))
    assert set(np.setdiff1d(np.arange(20), pruning.prune(np.arange(20), 3))) <= set(range(10, 20))
    # A pair trained in a later epoch keeps its latest loss; pairs never trained on rank after those that were.
    latest = pruning.latest_losses(1)
    assert latest[0] == 20 and latest[19] == 1
    fresh = LearnedPairPruning(20, 10, 0.5)
    fresh.record(0, torch.arange(8), torch.zeros(8))  # 8 of 20 seen: the easier half is those 8 and 2 unseen
    left_out = np.setdiff1d(np.arange(20), fresh.prune(np.arange(20), 2))
    assert set(left_out) <= set(range(10)) and left_out.size == 5
    assert fresh.recorded(0) == 8 and fresh.recorded(5) == 0


def test_a_non_finite_loss_counts_as_recorded_and_hardest():
    pruning = LearnedPairPruning(20, 10, 0.5)
    losses = torch.zeros(20)
    losses[[3, 7]] = torch.tensor([float("nan"), float("inf")])
    pruning.record(0, torch.arange(20), losses)
    assert pruning.recorded(0) == 20  # an overflowed loss does not look like a pair the loader never trained
    assert np.isposinf(pruning.latest_losses(0)[[3, 7]]).all()
    kept = pruning.prune(np.arange(20), 2)
    assert {3, 7} <= set(kept) and kept.size == 15


def test_record_checks_its_input():
    pruning = LearnedPairPruning(5, 4, 0.5)
    with pytest.raises(ValueError, match="2 sample indices but 3 losses"):
        pruning.record(0, torch.tensor([0, 1]), torch.zeros(3))
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\)"):
        pruning.record(0, torch.tensor([0, 5]), torch.zeros(2))


def test_save_and_load_restore_the_losses(tmp_path):
    pruning = recorded()
    pruning.record(3, torch.tensor([4, 2]), torch.tensor([0.5, 0.25]))
    pruning.save(str(tmp_path))
    assert (tmp_path / PRUNING_FILE).is_file()
    restored = LearnedPairPruning(20, 10, 0.5)
    restored.load(str(tmp_path))
    for epoch in (2, 4, 5):
        assert np.array_equal(restored.prune(np.arange(20), epoch), pruning.prune(np.arange(20), epoch))
    assert restored.recorded(3) == 2
    restored.load(str(tmp_path / "nowhere"))  # a checkpoint without pruning: nothing recorded
    assert restored.recorded(0) == 0
    with pytest.raises(ValueError, match="holds losses of"):
        LearnedPairPruning(21, 10, 0.5).load(str(tmp_path))


def test_the_sampler_plans_and_draws_the_pruned_pools():
    difficulty = np.linspace(0, 1, 20)
    pruning = recorded()
    sampler = CurriculumSampler(difficulty, "staged", num_epochs=10, seed=0, pruning=pruning)
    sizes = [sampler.pool_size(e) for e in range(10)]
    pools = [sampler.pool(e) for e in range(10)]
    assert sizes == [pool.size for pool in pools]
    unpruned = CurriculumSampler(difficulty, "staged", num_epochs=10, seed=0)
    for epoch in range(10):
        full = unpruned.pool(epoch)
        assert set(pools[epoch]) <= set(full)
        assert sizes[epoch] == full.size - pruning.num_pruned(full.size, epoch)
    assert sizes[2] < unpruned.pool_size(2) and sizes[9] == 20
    state = sampler.state_dict()
    with pytest.raises(ValueError, match="`pruning`"):
        unpruned.load_state_dict(state)
    other = CurriculumSampler(difficulty, "staged", num_epochs=10, seed=0, pruning=LearnedPairPruning(20, 10, 0.25))
    with pytest.raises(ValueError, match="`pruning`"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="built for 20 samples and 10 epochs"):
        CurriculumSampler(difficulty, "staged", num_epochs=8, pruning=pruning)
