"""FastKCenterGreedy selects exactly what anomalib's KCenterGreedy selects, reports progress and cancels.

Both samplers draw from torch's RNG (random projection, start index) and numpy's global RNG (the projection's
column sampling), so each comparison seeds both before each of the two runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anomalib.models.components import KCenterGreedy

from core.errors import RunCancelled
from core.models.coreset import CoresetCancelled, FastKCenterGreedy, select_coreset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """anomalib's per-pick full passes on these small tensors are much faster on one thread (no value changes:
    every distance is a per-row reduction; our sampler runs its loop on one thread anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seed(s: int) -> None:
    torch.manual_seed(s)
    np.random.seed(s)


def _random(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _clustered(n: int, d: int, seed: int, n_clusters: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, d, generator=g) * 4
    scales = torch.rand(n_clusters, 1, generator=g) * 0.8 + 0.05  # tight and loose clusters
    label = torch.randint(0, n_clusters, (n,), generator=g)
    return centres[label] + scales[label] * torch.randn(n, d, generator=g)


def _both(embedding: torch.Tensor, ratio: float, seed: int) -> tuple[list[int], list[int], float, float]:
    """(anomalib's indices, ours, torch.rand() after each): same indices and the same RNG state after."""
    _seed(seed)
    ref = KCenterGreedy(embedding, ratio).select_coreset_idxs()
    ref_after = torch.rand(1).item()
    _seed(seed)
    ours = FastKCenterGreedy(embedding, ratio).select_coreset_idxs()
    ours_after = torch.rand(1).item()
    return ref, ours, ref_after, ours_after


def test_same_indices_as_anomalib_on_random_data():
    ref, ours, ref_after, ours_after = _both(_random(20_000, 64, 100), 0.01, 0)
    assert len(ours) == 200
    assert ours == ref
    assert ours_after == ref_after  # the same random numbers were consumed


@pytest.mark.parametrize("seed", [0, 1])
def test_same_indices_as_anomalib_on_clustered_data(seed):
    ref, ours, _, _ = _both(_clustered(20_000, 64, 200 + seed), 0.015, seed)
    assert len(ours) == 300
    assert ours == ref


def test_same_indices_with_duplicate_rows_and_ties():
    # Exact duplicates give equal distances (ties broken by the first index, as torch.max does), and once
    # every distinct row is chosen all distances are 0 and anomalib keeps picking the first index.
    base = _clustered(40, 16, 7, n_clusters=5)
    rows = base[torch.randint(0, 40, (3000,), generator=torch.Generator().manual_seed(3))]
    ref, ours, _, _ = _both(rows, 0.02, 5)
    assert ours == ref
    assert ref[-1] == 0 and len(set(ref)) <= 41


def test_same_indices_for_float64_and_for_non_2d_embeddings():
    x = _clustered(3000, 32, 11).double()
    ref, ours, _, _ = _both(x, 0.03, 3)
    assert ours == ref
    # anomalib flattens a non-2-D embedding per row and skips the random projection; so do we
    x3 = _clustered(2000, 24, 12).reshape(2000, 4, 6)
    ref, ours, _, _ = _both(x3, 0.05, 4)
    assert ours == ref


def test_select_coreset_returns_the_same_rows_as_sample_coreset():
    x = _clustered(5000, 32, 21)
    _seed(9)
    ref = KCenterGreedy(x, 0.02).sample_coreset()
    _seed(9)
    ours, info = select_coreset(x, 0.02, method="anomalib")
    assert torch.equal(ours, ref)
    assert info["bank_size"] == 100 and not info["capped"]


def test_a_capped_anomalib_selection_is_the_first_picks_of_the_uncapped_one():
    x = _clustered(5000, 32, 22)
    _seed(3)
    full = FastKCenterGreedy(x, 0.05).select_coreset_idxs()
    _seed(3)
    capped, info = select_coreset(x, 0.05, max_size=60, method="anomalib")
    assert torch.equal(capped, x[full[:60]])
    assert info == {**info, "bank_size": 60, "requested_size": 250, "capped": True}


def test_progress_is_reported_about_every_percent_and_reaches_total():
    calls: list[tuple[int, int]] = []
    x = _clustered(20_000, 32, 31)
    _seed(0)
    sampler = FastKCenterGreedy(x, 0.05, progress=lambda done, total: calls.append((done, total)))
    idxs = sampler.select_coreset_idxs()
    total = len(idxs)
    assert total == 1000
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert 90 <= len(calls) <= 110


def test_should_stop_cancels_the_selection():
    x = _clustered(20_000, 32, 41)
    seen: list[int] = []
    stop_after = 3

    def stop() -> bool:
        return len(seen) >= stop_after

    sampler = FastKCenterGreedy(x, 0.05, progress=lambda done, total: seen.append(done), should_stop=stop)
    _seed(0)
    with pytest.raises(CoresetCancelled):
        sampler.select_coreset_idxs()
    assert len(seen) == stop_after
    assert seen[-1] < 1000
    assert issubclass(CoresetCancelled, RunCancelled)  # the run registry ends such a run as 'cancelled'


def test_should_stop_before_starting_cancels_at_once():
    for method in ("anomalib", "blocked"):
        with pytest.raises(CoresetCancelled):
            select_coreset(_random(1000, 8, 0), 0.1, should_stop=lambda: True, method=method)


def test_too_small_ratio_is_rejected_like_anomalib():
    with pytest.raises(ValueError, match="coreset_size"):
        FastKCenterGreedy(_random(100, 8, 0), 0.001)


def test_same_indices_on_low_dimensional_data_with_large_batches():
    # Low intrinsic dimension: the cluster pruning and the batched picks do most of the work here.
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(5))
    _seed(6)
    ref = KCenterGreedy(x, 0.15).select_coreset_idxs()
    _seed(6)
    sampler = FastKCenterGreedy(x, 0.15)
    ours = sampler.select_coreset_idxs()
    assert ours == ref
    assert sampler.stats["scanned_points"] > 0  # the cluster-by-cluster path ran
    assert sampler.stats["batches"] < len(ours) / 4  # several picks per batch


# ---- BlockedKCenterGreedy: the greedy rule at scale -------------------------------------------------------------


def _replay_gaps(x: torch.Tensor, picks: list[int]) -> np.ndarray:
    """For each pick after the first: (max min-distance - the pick's min-distance) / max, in float64, i.e. how far
    the pick was from being the farthest point (0 = exactly the greedy choice)."""
    f = x.double()
    md = torch.linalg.norm(f - f[picks[0]], dim=1)
    gaps = []
    for p in picks[1:]:
        top = float(md.max())
        gaps.append((top - float(md[p])) / top)
        md = torch.minimum(md, torch.linalg.norm(f - f[p], dim=1))
    return np.array(gaps)


@pytest.mark.parametrize("data", ["random", "clustered"])
def test_blocked_greedy_takes_the_farthest_point_at_every_pick(data):
    from core.models.coreset import BlockedKCenterGreedy

    x = _random(20_000, 48, 5) if data == "random" else _clustered(20_000, 48, 6)
    _seed(1)
    sampler = BlockedKCenterGreedy(x, 0.02, projection="none", pool_size=512)
    picks = sampler.select_coreset_idxs()
    assert len(picks) == 400 == len(set(picks))
    gaps = _replay_gaps(x, picks)
    assert gaps.max() < 1e-5, gaps.max()  # float32 matrix-product distances vs float64: rounding only
    assert sampler.stats["refreshes"] < 400  # several picks per pass over all points


def test_blocked_greedy_starts_where_anomalib_starts_and_a_cap_keeps_the_first_picks():
    from core.models.coreset import BlockedKCenterGreedy

    x = _clustered(8000, 32, 7)
    _seed(4)
    ref = KCenterGreedy(x, 0.01).select_coreset_idxs()
    _seed(4)
    full = BlockedKCenterGreedy(x, 0.05, projection="anomalib").select_coreset_idxs()
    assert full[0] == ref[0]
    _seed(4)
    capped, info = select_coreset(x, 0.05, max_size=100, method="blocked")
    assert info["bank_size"] == 100 and info["capped"] and info["requested_size"] == 400
    _seed(4)
    prefix = BlockedKCenterGreedy(x, 0.05, max_size=100).select_coreset_idxs()
    _seed(4)
    longer = BlockedKCenterGreedy(x, 0.05).select_coreset_idxs()
    assert prefix == longer[:100]


def test_blocked_greedy_stops_early_when_every_point_is_covered():
    from core.models.coreset import BlockedKCenterGreedy

    x = torch.cat([_random(10, 8, 0)] * 100)  # 1,000 rows, 10 distinct
    _seed(0)
    picks = BlockedKCenterGreedy(x, 0.5, projection="none").select_coreset_idxs()
    assert len({tuple(x[p].tolist()) for p in picks}) == 10 and len(picks) == 10


def test_blocked_greedy_reports_progress_and_cancels():
    from core.models.coreset import BlockedKCenterGreedy

    calls: list[int] = []
    x = _clustered(20_000, 32, 8)
    _seed(0)
    BlockedKCenterGreedy(x, 0.05, progress=lambda d, t: calls.append(d)).select_coreset_idxs()
    assert calls[-1] == 1000 and calls == sorted(calls) and 90 <= len(calls) <= 110
    with pytest.raises(CoresetCancelled):
        BlockedKCenterGreedy(
            x, 0.05, progress=lambda d, t: calls.append(d), should_stop=lambda: len(calls) > 105
        ).select_coreset_idxs()


def test_blocked_greedy_with_anomalibs_projection_picks_anomalibs_set():
    from core.models.coreset import BlockedKCenterGreedy

    x = _clustered(20_000, 48, 9).relu()
    _seed(2)
    ref = KCenterGreedy(x, 0.02).select_coreset_idxs()
    _seed(2)
    ours = BlockedKCenterGreedy(x, 0.02).select_coreset_idxs()
    assert ours[0] == ref[0]
    assert set(ours) == set(ref)  # near-ties may swap the order of two picks, never the set
