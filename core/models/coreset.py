"""Fast, exact k-center-greedy coreset selection for PatchCore.

anomalib's :class:`~anomalib.models.components.KCenterGreedy` recomputes the distance of *every* patch
vector to each new centre (``torch.linalg.norm(features - center, dim=1)``, a full copy of the features per
pick): on 2 CPU cores a 10 % coreset of MVTec grid (~270k patches) takes well over an hour.
:class:`FastKCenterGreedy` selects **the identical index sequence** -- same random projection, same
``torch.randint`` start, the same distance values bit for bit, the same first-index tie-breaking -- but only
computes the distances that can change:

* Every point belongs to the cluster of its nearest centre so far; clusters keep their members sorted by
  (-min distance, index). A new centre ``c`` can only lower the min distance of a point ``x`` of cluster
  ``a`` if ``d(c, a) < 2 md(x)`` (triangle inequality): whole clusters with ``d(c, a) >= 2 radius(a)`` are
  skipped, and of the others only a sorted prefix is looked at.
* Candidates are screened with a lower bound from a PCA of the features: the distance in the top principal
  components plus the difference of the residual norms (``||P(x-c)||² + (||Qx|| - ||Qc||)² <= ||x-c||²``),
  for all points at once with a matrix product while clusters are still huge.
* Only the points that pass get their distance computed, with anomalib's formula on their rows
  (``torch.linalg.norm(features[rows] - center, dim=1)`` gives each row the value the full computation
  gives it), and ``min_distances`` is lowered where that value is smaller.
* Several picks are taken at once when they provably are the next argmaxes: the next candidates in
  (-min distance, index) order are accepted as long as none of the accepted ones lowers a later one's
  distance (every other distance can only go down), then their distances are applied together.

Every pruning test has a safety margin (relative ``1e-3`` plus an absolute term far above float32 rounding),
so a point is skipped only when its anomalib distance provably cannot go below its current minimum: after
every pick ``min_distances`` equals anomalib's, hence so does every argmax (this is tested against anomalib).
When the bounds prune little (unstructured data), it falls back to plain full passes.

The run registry shows coreset progress through ``progress(done, total)`` (called about every 1 %) and
cancels through ``should_stop()`` (polled at least every 0.5 s), which raises :class:`CoresetCancelled`.
Features are processed on the CPU; exactness is versus anomalib on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from core.errors import RunCancelled
from core.runtime import release_freed

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]

# Pruning safety margins: a test "lower bound < threshold" is relaxed to
# "lower bound < threshold * (1 + _REL) + _ABS_FACTOR * scale" where scale is the largest feature norm
# (about the data mean). float32 rounding of a 300-dim distance is ~1e-5 relative, ~1e-7*scale absolute.
_REL = 1e-3
_ABS_FACTOR = 1e-4
# Principal components used for the lower bound (plus one residual-norm coordinate).
_PCA_COMPONENTS = 15
# Centres also get a finer lower bound (more components), used before computing centre-centre distances.
_PCA_COMPONENTS_CENTRES = 63
_PCA_SAMPLE = 32768
# Most argmax picks taken at once (all provably the next picks, see _PrunedState.leading_argmaxes).
_MAX_BATCH = 256
# Scanning cluster members costs about this many times a point of the dense lower-bound scan.
_SPARSE_COST = 10
# Clusters up to this size are scanned whole instead of binary-searched.
_SMALL_CLUSTER = 128
_DENSE_CHUNK = 32768
# Above n / this many exact distances per centre, full passes over all rows are cheaper than gathers.
_FULL_PASS_FRACTION = 4
# How often should_stop() is also checked between progress ticks (seconds).
_STOP_POLL_S = 0.5


class CoresetCancelled(RunCancelled):
    """Coreset selection was cancelled through ``should_stop()``."""


class FastKCenterGreedy:
    """Drop-in replacement for anomalib's ``KCenterGreedy`` that returns the same indices, much faster.

    Args:
        embedding: ``(n, d)`` patch embeddings (or any tensor; non-2-D ones are flattened per row and
            not projected, exactly like anomalib).
        sampling_ratio: fraction of rows to keep; ``int(n * sampling_ratio)`` rows are selected.
        progress: called as ``progress(done, total)`` about every 1 % of the selection (``total`` is the
            coreset size) and once with ``done == total`` at the end.
        should_stop: polled during the selection; when it returns True, :class:`CoresetCancelled` is raised.

    Seed ``torch`` (and numpy, which anomalib's random projection also draws from) before calling
    :meth:`select_coreset_idxs` to reproduce a given anomalib selection; the random numbers consumed are
    exactly those anomalib consumes.
    """

    def __init__(
        self,
        embedding: torch.Tensor,
        sampling_ratio: float,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ) -> None:
        # anomalib: ~5 s to import; this module itself needs only torch
        from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

        self.embedding = embedding
        n = embedding.shape[0]
        coreset_size = int(n * sampling_ratio)
        if coreset_size <= 0:
            msg = (
                f"coreset_size must be a positive integer, got {coreset_size}. "
                f"Check sampling_ratio ({sampling_ratio}) and embedding size ({n})."
            )
            raise ValueError(msg)
        self.coreset_size = coreset_size
        self.model = SparseRandomProjection(eps=0.9)
        self.features: torch.Tensor
        self.min_distances: torch.Tensor | None = None
        self.n_observations = n
        self.progress = progress
        self.should_stop = should_stop
        self.stats: dict[str, float] = {}

    # ---- anomalib-compatible API -----------------------------------------------------------------------

    def reset_distances(self) -> None:
        self.min_distances = None

    def select_coreset_idxs(self) -> list[int]:
        """Greedily select coreset indices (identical to ``KCenterGreedy.select_coreset_idxs``)."""
        self._check_stop(force=True)
        if self.embedding.ndim == 2:
            self.model.fit(self.embedding)
            self.features = self.model.transform(self.embedding)
        else:
            self.features = self.embedding.reshape(self.embedding.shape[0], -1)
        self.reset_distances()
        # Same call, same device, same generator as anomalib: the start index matches for the same seed.
        start = int(torch.randint(high=self.n_observations, size=(1,), device=self.features.device).squeeze())

        features = self.features.detach()
        if features.device.type != "cpu":
            features = features.cpu()
        features = features.contiguous()
        if (
            features.dtype in (torch.float32, torch.float64)
            and self.coreset_size > 1
            and features.shape[1] > 0
            and bool(torch.isfinite(features).all())
        ):
            idxs = self._select_pruned(features, start)
        else:
            idxs = self._select_dense(features, start)
        self._report(len(idxs), force=True)
        return idxs

    def sample_coreset(self) -> torch.Tensor:
        """The selected rows of the embedding (``embedding[select_coreset_idxs()]``)."""
        idxs = self.select_coreset_idxs()
        return self.embedding[idxs]

    # ---- progress / cancellation -------------------------------------------------------------------------

    def _setup_reporting(self) -> None:
        self._tick = max(1, self.coreset_size // 100)
        self._next_report = self._tick
        self._last_done = -1
        self._last_poll = time.monotonic()

    def _check_stop(self, force: bool = False) -> None:
        if self.should_stop is None:
            return
        now = time.monotonic()
        if force or now - getattr(self, "_last_poll", 0.0) >= _STOP_POLL_S:
            self._last_poll = now
            if self.should_stop():
                raise CoresetCancelled("coreset selection cancelled")

    def _report(self, done: int, force: bool = False) -> None:
        if (force and done != self._last_done) or done >= self._next_report:
            while self._next_report <= done:
                self._next_report += self._tick
            self._last_done = done
            if self.progress is not None:
                self.progress(done, self.coreset_size)
            self._check_stop(force=True)
        else:
            self._check_stop()  # at most every _STOP_POLL_S seconds

    # ---- plain version (other dtypes): anomalib's loop with preallocated buffers ----------------------------

    def _select_dense(self, features: torch.Tensor, start: int) -> list[int]:
        self._setup_reporting()
        n = features.shape[0]
        flat = features.reshape(n, -1)
        buf = torch.empty_like(flat)
        dist = torch.empty((n, 1), dtype=flat.dtype)
        min_d: torch.Tensor | None = None
        idx = start
        selected = [idx]
        self._report(1)
        for _ in range(self.coreset_size - 1):
            torch.sub(flat, flat[idx], out=buf)
            torch.linalg.vector_norm(buf, ord=2, dim=1, keepdim=True, out=dist)
            if min_d is None:
                min_d = dist.clone()
            else:
                torch.minimum(min_d, dist, out=min_d)
            idx = int(torch.max(min_d.squeeze(1), dim=0)[1])
            min_d[idx, 0] = 0.0
            selected.append(idx)
            self._report(len(selected))
        self.min_distances = min_d
        return selected

    # ---- pruned version ---------------------------------------------------------------------------------

    def _lower_bound_coords(self, features: torch.Tensor) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """``Z`` (n, m+1) float32 with ``||Z[x] - Z[y]|| <= ||f[x] - f[y]||``; and the data scale."""
        n, d = features.shape
        m = min(_PCA_COMPONENTS, d)
        step = max(1, n // _PCA_SAMPLE)
        sample = features[::step]
        mean = sample.to(torch.float64).mean(0)
        # The basis only has to be orthonormal for the bound to hold (eigh in float64 sees to that);
        # an approximate covariance (float32, a strided sample) is good enough to make it tight.
        centred = sample - mean.to(sample.dtype)
        cov = (centred.T @ centred).to(torch.float64)
        del centred
        _, vecs = torch.linalg.eigh(cov)  # orthonormal columns: all the bound needs
        vecs = vecs.flip(1).numpy()
        mean_np = mean.numpy()
        # float64 throughout: P x = x @ B - mean @ B, |x - mean|^2 = |x|^2 - 2 x.mean + |mean|^2
        basis_mean = np.ascontiguousarray(np.concatenate([vecs[:, :m], mean_np[:, None]], axis=1))
        mean_proj = mean_np @ vecs[:, :m]
        mean_sq = float(mean_np @ mean_np)
        f_np = features.numpy()
        z = np.empty((n, m + 1), dtype=np.float32)
        scale_sq = 0.0
        chunk = 16384
        for lo in range(0, n, chunk):
            x = f_np[lo : lo + chunk].astype(np.float64)
            g = x @ basis_mean
            p = g[:, :m] - mean_proj
            sq = np.einsum("ij,ij->i", x, x) - 2.0 * g[:, m] + mean_sq
            res = np.sqrt(np.maximum(sq - np.einsum("ij,ij->i", p, p), 0.0))
            z[lo : lo + chunk, :m] = p
            z[lo : lo + chunk, m] = res
            scale_sq = max(scale_sq, float(sq.max()))
        scale = float(np.sqrt(max(scale_sq, 0.0)))
        m2 = min(_PCA_COMPONENTS_CENTRES, d)
        return z, scale, mean_np, np.ascontiguousarray(vecs[:, :m2])

    def _select_pruned(self, features: torch.Tensor, start: int) -> list[int]:
        """The pruned, batched selection (float32/float64 features on the CPU)."""
        # Thousands of small operations: one thread avoids OpenMP/BLAS wake-up and spin costs (and changes
        # no value: every distance is a per-row reduction).
        threads = torch.get_num_threads()
        limits = threadpool_limits(limits=1)  # BLAS/OpenMP pools too (threadpoolctl comes with scikit-learn)
        try:
            torch.set_num_threads(1)
            with limits:
                z, scale, mean, basis2 = self._lower_bound_coords(features)
                return self._greedy_loop(features, start, z, scale, mean, basis2)
        finally:
            torch.set_num_threads(threads)

    def _greedy_loop(
        self, features: torch.Tensor, start: int, z: np.ndarray, scale: float, mean: np.ndarray, basis2: np.ndarray
    ) -> list[int]:
        """anomalib's picks, in batches: each batch is the next candidates in argmax order that provably are the
        next argmaxes; then its distances are applied together."""
        self._setup_reporting()
        k_total = self.coreset_size
        state = _PrunedState(features, z, scale, mean, basis2, n_clusters=k_total)
        selected = [start]
        self._report(1)
        state.start_at(start)
        want = 8
        while len(selected) < k_total:
            remaining = k_total - len(selected)
            if state.all_covered():
                # every min distance is 0: anomalib's torch.max keeps returning the first index
                selected.extend([state.first_argmax()] * remaining)
                break
            lc = min(want, remaining, max(8, self._tick))  # no batch spans more than ~1 % (progress)
            clusters, cand, cmd = state.next_candidates(lc)
            b = state.leading_argmaxes(cand, cmd)
            batch = cand[:b]
            want = min(2 * want, _MAX_BATCH) if b == lc else max(8, 2 * b)
            state.select(batch, clusters, lc)
            selected.extend(batch.tolist())
            # anomalib never applies the distances of its last pick; neither do we (same min_distances)
            upd = batch if len(selected) < k_total else batch[:-1]
            if len(upd):
                state.apply_centres(upd)
            self._report(len(selected))

        self.min_distances = state.md_t.unsqueeze(1)
        state.stats["iterations"] = k_total - 1
        self.stats = state.stats
        return selected


class _PrunedState:
    """What the pruned selection knows between picks, and the steps that change it.

    ``md`` is anomalib's ``min_distances``. Every point that is not a centre belongs to the cluster of its
    nearest centre so far: one cluster per centre whose distances were applied, in selection order. Members
    (never a selected point) are sorted by (-min_distance, index): the first is the cluster's farthest point
    (smallest index among ties) and the points that a new centre can move are a prefix.
    """

    def __init__(
        self,
        features: torch.Tensor,
        z: np.ndarray,
        scale: float,
        mean: np.ndarray,
        basis2: np.ndarray,
        n_clusters: int,
    ) -> None:
        n = features.shape[0]
        self.n = n
        self.features = features
        self.f_np = features.numpy()
        self.z = z  # the points' lower-bound coordinates (see _lower_bound_coords)
        self.zn2 = np.einsum("ij,ij->i", z, z)  # |Z x|^2, for the dense scan
        self.mean = mean
        self.basis2 = basis2
        self.abs_margin = _ABS_FACTOR * scale + 1e-30
        self.rel = 1.0 + _REL
        self.md_t = torch.empty(n, dtype=features.dtype)  # anomalib's min_distances, shape (n,) not (n, 1)
        self.md = self.md_t.numpy()
        self.mark = np.zeros(n, dtype=bool)  # scratch flags for the points being moved or selected
        self.owner = np.zeros(n, dtype=np.int64)  # each point's cluster (nearest centre so far)
        self.empty_i = np.empty(0, dtype=np.int64)
        self.empty_f = np.empty(0, dtype=self.md.dtype)
        self.mem: list[np.ndarray] = []  # each cluster's members
        self.key: list[np.ndarray] = []  # -min_distance of the members, ascending
        self.rad = np.full(n_clusters, -np.inf)  # the cluster's largest min_distance (-inf: empty)
        self.thr2 = np.full(n_clusters, -1.0)  # (2 rad (1+rel) + abs)^2, -1 for an empty cluster
        self.csize = np.zeros(n_clusters, dtype=np.int64)
        self.cz = np.zeros((n_clusters, z.shape[1]), dtype=np.float64)  # centres' lower-bound coordinates
        self.cz2 = np.zeros(n_clusters, dtype=np.float64)
        self.cz_hi = np.zeros((n_clusters, basis2.shape[1] + 1), dtype=np.float32)  # finer ones (more components)
        self.dense_streak = 0  # updates in a row that used the dense scan
        self.full_buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self.stats = {
            "batches": 0,
            "candidate_clusters": 0,
            "scanned_points": 0,
            "bound_checks": 0,
            "exact_distances": 0,
            "dense_updates": 0,
            "full_passes": 0,
        }

    # ---- the picks ----------------------------------------------------------------------------------------

    def start_at(self, start: int) -> None:
        """The first centre: the full computation, as anomalib does; every other point joins its cluster."""
        n, md = self.n, self.md
        torch.linalg.vector_norm(self.features - self.features[start], ord=2, dim=1, out=self.md_t)
        self.stats["exact_distances"] += n
        self.add_centres(np.array([start], dtype=np.int64))
        rest = np.flatnonzero(np.arange(n) != start)
        order = np.lexsort((rest, -md[rest]))
        self.set_cluster(0, rest[order], -md[rest[order]])
        md[start] = 0.0

    def all_covered(self) -> bool:
        """True when every min distance is 0 (no cluster has a point left at a positive distance)."""
        return not self.rad[: len(self.mem)].max() > 0

    def first_argmax(self) -> int:
        return int(torch.max(self.md_t, dim=0)[1])

    def next_candidates(self, lc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clusters looked at, the next ``lc`` candidates in argmax order, their min distances): the heads of
        the clusters with the largest radii."""
        take, mem, key = np.take, self.mem, self.key
        k = len(mem)
        rk = self.rad[:k]
        cl = np.flatnonzero(rk >= np.partition(rk, k - lc)[k - lc]) if k > lc else np.flatnonzero(rk > 0)
        heads = [mem[a][:lc] for a in cl.tolist()]
        hkeys = [key[a][:lc] for a in cl.tolist()]
        hp = np.concatenate(heads) if len(heads) > 1 else heads[0]
        hk = np.concatenate(hkeys) if len(hkeys) > 1 else hkeys[0]
        o = np.lexsort((hp, hk))[:lc]
        cand = take(hp, o)
        cmd = -take(hk, o).astype(np.float64)
        pos = cmd > 0
        if not pos.all():
            cand, cmd = cand[pos], cmd[pos]
        return cl, cand, cmd

    def leading_argmaxes(self, cand: np.ndarray, cmd: np.ndarray) -> int:
        """How many leading candidates are the next argmaxes: y_l is, as long as none of y_1..y_(l-1)
        lowers its distance (every other distance can only go down)."""
        if len(cand) < 2:
            return len(cand)
        take = np.take
        zc = take(self.z, cand, axis=0).astype(np.float64)
        n2 = np.einsum("ij,ij->i", zc, zc)
        lb = zc @ zc.T
        lb *= -2.0
        lb += n2[:, None]
        lb += n2[None, :]
        bnd = cmd * self.rel + self.abs_margin
        rows, cols = np.nonzero(np.tril(lb < (bnd * bnd)[:, None], -1))
        if len(rows) == 0:
            return len(cand)
        d = self.exact(take(cand, rows), take(cand, cols))
        hit = rows[d < take(cmd, rows)]
        return int(hit.min()) if len(hit) else len(cand)

    def select(self, batch: np.ndarray, clusters: np.ndarray, lc: int) -> None:
        """Select a batch of candidates (taken from the first ``lc`` members of ``clusters``): distance 0, out
        of their clusters."""
        mem, key, mark = self.mem, self.key, self.mark
        self.stats["batches"] += 1
        self.md[batch] = 0.0
        mark[batch] = True
        for a in clusters.tolist():
            h = mem[a][:lc]
            hit = np.take(mark, h)
            if hit.any():
                kept = np.concatenate((h[~hit], mem[a][lc:]))
                self.set_cluster(a, kept, np.concatenate((key[a][:lc][~hit], key[a][lc:])))
        mark[batch] = False

    def apply_centres(self, centres: np.ndarray) -> None:
        """Apply the distances to ``centres`` (min_distances = min(min_distances, d(., c)) for each c)."""
        take = np.take
        k = len(self.mem)
        first = self.add_centres(centres)
        pe, ce, mdp = self.candidates(centres, k, first)
        self.stats["exact_distances"] += len(pe)
        if len(pe) == 0:
            return
        # 4. anomalib's distances for the survivors; keep those below the current minimum
        d = self.exact(pe, ce, take(self.f_np, centres, axis=0))
        mv = np.flatnonzero(d < mdp)
        if len(mv) == 0:
            return
        mp, mc, mdv = nearest_centre_per_point(take(pe, mv), take(ce, mv), take(d, mv))
        self.md[mp] = mdv
        self.move_to_new_clusters(mp, mc, mdv, first, len(centres))

    # ---- clusters and centres -----------------------------------------------------------------------------

    def set_cluster(self, a: int, members: np.ndarray, keys: np.ndarray) -> None:
        self.mem[a] = members
        self.key[a] = keys
        self.csize[a] = len(members)
        if len(keys):
            r = -float(keys[0])
            self.rad[a] = r
            t = 2.0 * r * self.rel + self.abs_margin
            self.thr2[a] = t * t
        else:
            self.rad[a] = -np.inf
            self.thr2[a] = -1.0

    def add_centres(self, centres: np.ndarray) -> int:
        """Register lower-bound coordinates for new centres (and empty clusters); return the first new
        cluster id."""
        take = np.take
        first = len(self.mem)
        last = first + len(centres)
        zc = take(self.z, centres, axis=0).astype(np.float64)
        self.cz[first:last] = zc
        self.cz2[first:last] = np.einsum("ij,ij->i", zc, zc)
        x = take(self.f_np, centres, axis=0).astype(np.float64) - self.mean
        p = x @ self.basis2
        self.cz_hi[first:last, :-1] = p
        self.cz_hi[first:last, -1] = np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x) - np.einsum("ij,ij->i", p, p), 0))
        self.mem.extend([np.empty(0, dtype=np.int64)] * len(centres))
        self.key.extend([np.empty(0, dtype=self.md.dtype)] * len(centres))
        return first

    def move_to_new_clusters(self, mp: np.ndarray, mc: np.ndarray, mdv: np.ndarray, first: int, u: int) -> None:
        """Points ``mp`` are now nearest to new centre ``mc`` (of ``u``, clusters from ``first`` on), at
        ``mdv``: out of the clusters they leave, into the new ones in (-min_distance, index) order."""
        mem, key, mark, owner = self.mem, self.key, self.mark, self.owner
        mark[mp] = True
        for a in np.unique(np.take(owner, mp)).tolist():  # the clusters they leave
            m_a = mem[a]
            kept = ~np.take(mark, m_a)
            self.set_cluster(a, m_a[kept], key[a][kept])
        mark[mp] = False
        owner[mp] = mc + first
        o = np.lexsort((mp, -mdv, mc))  # by centre, then (-min_distance, index)
        counts = np.bincount(mc, minlength=u)
        bounds = np.zeros(u + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        mp = mp[o]
        negd = -mdv[o]
        for i in np.flatnonzero(counts).tolist():
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            self.set_cluster(first + i, mp[lo:hi], negd[lo:hi])

    # ---- which points a new centre may move ---------------------------------------------------------------

    def candidates(self, centres: np.ndarray, k: int, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points, centre slots, their min distances) that may get closer to one of ``centres``: cluster by
        cluster, by the dense scan, or by full passes, whichever is cheapest."""
        u = len(centres)
        zc32 = np.take(self.z, centres, axis=0)
        # while the clusters are huge, the dense scan wins: retry the cluster-by-cluster one now and then
        found = None
        if self.dense_streak % 4 == 0:
            found = self.candidates_sparse(k, first, u, zc32)
        self.dense_streak = 0 if found is not None else self.dense_streak + 1
        pe, ce, mdp = found if found is not None else self.candidates_dense(u, zc32)
        if len(pe) * _FULL_PASS_FRACTION > self.n * u:
            # the bounds prune little here (unstructured data): plain passes over all rows are cheaper
            pe, ce, mdp = self.candidates_full(centres)
        return pe, ce, mdp

    def candidates_sparse(self, k: int, first: int, u: int, zc32: np.ndarray):
        """(points, centre slots, their min distances) that may get closer, found cluster by cluster;
        or None when the clusters to scan are so large that the dense scan is cheaper."""
        take, cz, cz2, cz_hi, thr2 = np.take, self.cz, self.cz2, self.cz_hi, self.thr2
        rel, abs_margin, stats = self.rel, self.abs_margin, self.stats
        zc = cz[first : first + u]
        # 1. (cluster a, centre c) pairs where a can hold a point closer to c than to a: d(c, a) < 2 rad(a)
        pa_l, pc_l = [], []
        for lo in range(0, k, _DENSE_CHUNK):
            hi = min(k, lo + _DENSE_CHUNK)
            lb = cz[lo:hi] @ zc.T
            lb *= -2.0
            lb += cz2[lo:hi, None]
            lb += cz2[None, first : first + u]
            r, c = np.nonzero(lb < thr2[lo:hi, None])
            pa_l.append(r + lo)
            pc_l.append(c)
        pa = np.concatenate(pa_l)
        pc = np.concatenate(pc_l)
        g2 = take(cz_hi, pa, axis=0)
        g2 -= take(cz_hi, pc + first, axis=0)
        lbc2 = np.einsum("ij,ij->i", g2, g2)  # finer lower bound of d(c, a)^2
        keep = np.flatnonzero(lbc2 < take(thr2, pa))
        pa = take(pa, keep)
        pc = take(pc, keep)
        stats["candidate_clusters"] += len(pa)
        # 2. per point x of a: d(c, a) < 2 md(x), i.e. md(x) > lim; a sorted prefix of a
        lim = (np.sqrt(np.maximum(take(lbc2, keep), 0.0)) - abs_margin) / (2.0 * rel)
        pa_list = pa.tolist()
        parts = [self.mem[a] for a in pa_list]
        kparts = [self.key[a] for a in pa_list]
        plens = self.csize[pa]
        for j in np.flatnonzero(plens > _SMALL_CLUSTER).tolist():
            p = int(np.searchsorted(kparts[j], -lim[j], side="left"))
            parts[j] = parts[j][:p]
            kparts[j] = kparts[j][:p]
            plens[j] = p
        if int(plens.sum()) * _SPARSE_COST > self.n * u:
            return None
        if len(parts) == 0:
            return self.empty_i, self.empty_i, self.empty_f
        allm = np.concatenate(parts) if len(parts) > 1 else parts[0]
        allk = np.concatenate(kparts) if len(kparts) > 1 else kparts[0]
        stats["scanned_points"] += len(allm)
        pair = np.repeat(np.arange(len(pa)), plens)
        mdp = -allk  # the members' min_distances, in member order
        s1 = np.flatnonzero(mdp > take(lim, pair))
        pts = take(allm, s1)
        mdp = take(mdp, s1)
        cen = take(pc, take(pair, s1))
        # 3. PCA lower bound: ||Z x - Z c|| < md(x)
        g = take(self.z, pts, axis=0)
        g -= take(zc32, cen, axis=0)
        lbp = np.einsum("ij,ij->i", g, g)
        bnd = mdp * rel + abs_margin
        s2 = np.flatnonzero(lbp < bnd * bnd)
        stats["bound_checks"] += len(pts)
        return take(pts, s2), take(cen, s2), take(mdp, s2)

    def candidates_dense(self, u: int, zc32: np.ndarray):
        """The same test, ||Z x - Z c|| < md(x), for every point and centre at once (a matrix product)."""
        n, z, zn2, md = self.n, self.z, self.zn2, self.md
        czn = np.einsum("ij,ij->i", zc32, zc32)
        # float32 |x|^2 + |c|^2 - 2 x.c is off by at most ~24 eps (|x|^2 + |c|^2): allow 64 eps
        slack = np.float32(64 * np.finfo(np.float32).eps)
        pts_l, cen_l = [], []
        for lo in range(0, n, _DENSE_CHUNK):
            hi = min(n, lo + _DENSE_CHUNK)
            blk = z[lo:hi] @ zc32.T
            blk *= -2.0
            blk += zn2[lo:hi, None]
            blk += czn[None, :]
            b = md[lo:hi] * np.float32(self.rel) + np.float32(self.abs_margin)
            b *= b
            b += slack * (zn2[lo:hi] + czn.max())
            r, c = np.nonzero(blk < b[:, None])
            pts_l.append(r + lo)
            cen_l.append(c)
        self.stats["bound_checks"] += n * u
        self.stats["dense_updates"] += 1
        pts = np.concatenate(pts_l)
        cen = np.concatenate(cen_l)
        return pts, cen, np.take(md, pts)

    def candidates_full(self, centres: np.ndarray):
        """Every point whose distance to a centre is below its min distance, by full passes."""
        features, md = self.features, self.md
        if self.full_buffers is None:
            self.full_buffers = (torch.empty_like(features), torch.empty(self.n, dtype=features.dtype))
        buf, dist = self.full_buffers
        pts_l, cen_l = [], []
        for i, c in enumerate(centres.tolist()):
            torch.sub(features, features[c], out=buf)
            torch.linalg.vector_norm(buf, ord=2, dim=1, out=dist)
            p = np.flatnonzero(dist.numpy() < md)
            pts_l.append(p)
            cen_l.append(np.full(len(p), i, dtype=np.int64))
        self.stats["full_passes"] += len(centres)
        pts = np.concatenate(pts_l)
        return pts, np.concatenate(cen_l), np.take(md, pts)

    def exact(self, rows: np.ndarray, centers: np.ndarray, center_rows: np.ndarray | None = None) -> np.ndarray:
        """anomalib's ``torch.linalg.norm(features[rows] - features[center], dim=1)``, row by row the same
        value as its full computation (the difference is elementwise; the norm is a per-row reduction).
        ``centers`` indexes ``center_rows`` when given (a small, cache-resident copy), else the features."""
        f_np = self.f_np
        sub = torch.from_numpy(np.take(f_np, rows, axis=0))
        sub.sub_(torch.from_numpy(np.take(f_np if center_rows is None else center_rows, centers, axis=0)))
        return torch.linalg.vector_norm(sub, ord=2, dim=1).numpy()


def nearest_centre_per_point(
    mp: np.ndarray, mc: np.ndarray, mdv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points ``mp`` moved by centres ``mc`` to distances ``mdv``: a point moved by several centres keeps the
    nearest (the smallest centre slot among ties)."""
    if len(mp) == len(np.unique(mp)):
        return mp, mc, mdv
    o = np.lexsort((mc, mdv, mp))
    mp, mc, mdv = mp[o], mc[o], mdv[o]
    first_of = np.ones(len(mp), dtype=bool)
    first_of[1:] = mp[1:] != mp[:-1]
    return mp[first_of], mc[first_of], mdv[first_of]


def concat_and_clear(store: list[torch.Tensor]) -> torch.Tensor:
    """``torch.vstack(store)`` then ``store.clear()``, without holding both copies: each batch is freed as soon as it
    is copied, and freed memory is handed back to the OS as it goes (glibc keeps freed batches in its heap
    otherwise: at 1 M patches x 152 features the fit's peak was 0.6 GB higher)."""
    if len(store) == 1:
        return store.pop()
    total = sum(t.shape[0] for t in store)
    out = torch.empty((total, *store[0].shape[1:]), dtype=store[0].dtype)
    offset = freed = 0
    store.reverse()
    while store:
        t = store.pop()
        out[offset : offset + t.shape[0]] = t
        offset += t.shape[0]
        freed += t.numel() * t.element_size()
        del t
        if freed > 128 << 20:
            release_freed()
            freed = 0
    release_freed()
    return out


def select_coreset(
    embedding: torch.Tensor,
    sampling_ratio: float,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    max_size: int | None = None,
    method: str = "blocked",
) -> tuple[torch.Tensor, dict]:
    """PatchCore's memory bank (the coreset rows of ``embedding``) and what was done to get it
    (``select_coreset_indices`` for the rows' indices: where each bank entry came from)."""
    idxs, info = select_coreset_indices(embedding, sampling_ratio, progress, should_stop, max_size, method)
    return embedding[idxs], info


def select_coreset_indices(
    embedding: torch.Tensor,
    sampling_ratio: float,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    max_size: int | None = None,
    method: str = "blocked",
) -> tuple[list[int], dict]:
    """The indices of PatchCore's coreset rows of ``embedding``, in pick order, and what was done to get them.

    ``method="anomalib"``: anomalib's exact pick sequence (``FastKCenterGreedy``); ``"blocked"``: the same greedy
    rule with matrix products (``BlockedKCenterGreedy``), for large sets. ``max_size`` caps the bank.
    """
    t0 = time.perf_counter()
    n = embedding.shape[0]
    if method == "anomalib":
        ratio = sampling_ratio
        if max_size and int(n * sampling_ratio) > max_size:
            ratio = (max_size + 0.5) / n  # int(n * ratio) == max_size, whatever the float rounding
        sampler = FastKCenterGreedy(embedding, ratio, progress=progress, should_stop=should_stop)
        idxs = sampler.select_coreset_idxs()
        dims = sampler.features.shape[1]
    elif method == "blocked":
        sampler = BlockedKCenterGreedy(
            embedding, sampling_ratio, max_size=max_size, progress=progress, should_stop=should_stop
        )
        idxs = sampler.select_coreset_idxs()
        dims = sampler.stats["dims"]
    else:
        raise ValueError(f"Unknown coreset method {method!r}: use 'blocked' or 'anomalib'.")
    requested = int(n * sampling_ratio)
    info = {
        "method": method,
        "patches": n,
        "features": int(embedding.shape[1]),
        "selection_dims": int(dims),
        "bank_size": len(idxs),
        "requested_size": requested,
        "capped": bool(max_size and requested > max_size),
        "seconds": time.perf_counter() - t0,
    }
    return idxs, info


# ---- blocked k-center greedy: the same greedy rule, computed with matrix products -----------------------------


class BlockedKCenterGreedy:
    """k-center greedy (PatchCore's coreset rule: repeatedly take the patch farthest from all picks so far) for
    millions of patches, computed with matrix products instead of one pass over all patches per pick.

    Exact greedy order, with distances from ``|x|^2 + |c|^2 - 2 x.c`` in float32 (on centred features) rather
    than anomalib's ``norm(x - c)``: at near-ties of ~1e-6 relative two picks may come in the other order, so the
    sequence is not bit-identical to anomalib's (``FastKCenterGreedy`` is, and stays available), the set is.

    Lazy evaluation keeps it exact: every patch holds an upper bound of its squared min distance (all picks up
    to the last refresh applied). A *pool* holds the ``pool_size`` patches with the largest bounds, with exact
    min distances kept up to date pick by pick; every patch outside it is at most ``tau``, the largest bound
    outside. So while the pool's best is >= tau it is the true farthest patch. When it drops below, the picks
    made since the last refresh are applied to all patches at once (one matrix product, chunked) and the pool
    is rebuilt. Cost: N x k x d multiply-adds in matrix products (~145 GFLOP/s on 2 cores) instead of k
    memory-bound passes over the features.

    Memory and arithmetic: distances in anomalib's projected space come from the raw rows and the projection's
    metric (``_prepare``), so nothing of size N x JL-dims is ever stored or recomputed.

    Args:
        embedding: ``(n, d)`` patch features.
        sampling_ratio: fraction of rows to keep (``int(n * ratio)``, as anomalib).
        max_size: keep at most this many rows (None: no cap). Greedy is sequential, so a capped selection is
            exactly the first ``max_size`` picks of the uncapped one.
        projection: "anomalib" (default) applies anomalib's sparse random projection (eps=0.9, the same random
            numbers), so the picks are anomalib's up to near-ties (tests: the same set, sometimes in another order);
            "auto" does so only when it lowers the dimension (anomalib's rule *raises* EfficientNet-Lite0's 152
            features to 341 dimensions at 1 M patches: 2.2x the work); "none" uses the features as they are.
    """

    CHUNK_ELEMENTS = 16 << 20  # ~64 MB of float32 per chunk of distances or projected rows

    def __init__(
        self,
        embedding: torch.Tensor,
        sampling_ratio: float,
        max_size: int | None = None,
        projection: str = "anomalib",
        pool_size: int = 8192,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ) -> None:
        n = embedding.shape[0]
        size = int(n * sampling_ratio)
        if max_size:
            size = min(size, int(max_size))
        if size <= 0:
            raise ValueError(
                f"coreset_size must be a positive integer, got {size} (sampling_ratio {sampling_ratio}, "
                f"{n} embeddings)."
            )
        if projection not in ("anomalib", "auto", "none"):
            raise ValueError(f"projection must be 'anomalib', 'auto' or 'none', got {projection!r}")
        self.embedding = embedding
        self.coreset_size = size
        self.projection = projection
        self.pool_size = pool_size
        self.progress, self.should_stop = progress, should_stop
        self.stats: dict[str, float] = {}
        self._last_poll = 0.0

    # ---- features: centred raw rows and the projection's metric ------------------------------------------------

    def _prepare(self) -> None:
        """Distances in anomalib's projected space without projecting a single row.

        anomalib measures distances after a sparse random projection ``R`` (d -> JL dims, which at a million
        patches is *more* than the 152 feature dims: 341). ``|R(x - c)|^2 = (x - c)^T G (x - c)`` with the
        d x d metric ``G = R^T R``, so every product runs on the raw (centred) d-dim rows against ``G c``: no
        projected copy of the features is stored (at 2 M patches x 341 dims that would be 2.7 GB) and none is
        recomputed at each refresh (which cost ~2/3 of the time at 1 M patches), and the distance products are
        d-wide instead of JL-wide. The same distances in exact arithmetic; float32 rounding differs slightly."""
        # anomalib: ~5 s to import; this module itself needs only torch
        from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

        raw = self.embedding.detach().reshape(self.embedding.shape[0], -1)
        self._raw = raw if raw.dtype == torch.float32 else raw.float()
        n, d = self._raw.shape
        rp = SparseRandomProjection(eps=0.9)
        # Non-2-D embeddings are flattened and not projected, as anomalib does.
        project = self.embedding.ndim == 2 and (
            self.projection == "anomalib"
            or (self.projection == "auto" and rp._johnson_lindenstrauss_min_dim(n, 0.9) < d)
        )
        # Centring changes no distance and keeps |x|^2 + |c|^2 - 2 x.c well conditioned.
        self._mean = self._raw[:: max(1, n // 65536)].double().mean(0).float()
        if project:
            rp.fit(self._raw)  # draws the same random numbers as anomalib's sampler
            r = rp.sparse_random_matrix.double()  # (JL dims, d)
            self._metric = (r.T @ r).float()
            self.stats["dims"] = int(r.shape[0])
        else:
            self._metric = None
            self.stats["dims"] = d

    def _rows(self, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Centred raw rows ``lo:hi`` (into ``out`` when given)."""
        return torch.sub(self._raw[lo:hi], self._mean, out=out[: hi - lo] if out is not None else None)

    def _take(self, idx: torch.Tensor) -> torch.Tensor:
        return self._raw[idx] - self._mean

    def _metric_of(self, x: torch.Tensor) -> torch.Tensor:
        """``x G`` (rows): what a row meets in a dot product for the projected distance."""
        return x if self._metric is None else x @ self._metric

    def _chunk_rows(self, width: int) -> int:
        return max(1024, self.CHUNK_ELEMENTS // max(1, width, self._raw.shape[1]))

    def _check_stop(self, force: bool = False) -> None:
        if self.should_stop is None:
            return
        now = time.monotonic()
        if force or now - self._last_poll >= _STOP_POLL_S:
            self._last_poll = now
            if self.should_stop():
                raise CoresetCancelled("coreset selection cancelled")

    # ---- the selection --------------------------------------------------------------------------------------

    def select_coreset_idxs(self) -> list[int]:
        self._check_stop(force=True)
        t0 = time.perf_counter()
        self._prepare()
        n = self._raw.shape[0]
        k = self.coreset_size
        sq = torch.empty(n)  # |R(x - mean)|^2 per row
        step = min(n, self._chunk_rows(1))
        buf = torch.empty((step, self._raw.shape[1]))
        for lo in range(0, n, step):
            f = self._rows(lo, min(n, lo + step), buf)
            sq[lo : lo + f.shape[0]] = torch.einsum("ij,ij->i", self._metric_of(f), f)
        del buf
        # A point this close to a pick is a duplicate of it (the matrix-product distances' rounding is ~1e-7 of
        # |x|^2): once every point is that close, the rest of the "farthest points" would be noise.
        covered = 1e-6 * float(sq.max())
        # Same call as anomalib's sampler for the first pick (seed torch to reproduce a run).
        start = int(torch.randint(high=n, size=(1,)).squeeze())
        ub = torch.full((n,), float("inf"))
        self._apply(sq, ub, [start])
        ub[start] = 0.0
        selected = [start]
        tick = max(1, k // 100)
        next_report = tick
        refreshes = 0
        while len(selected) < k:
            top = min(self.pool_size, n)
            vals, pool = torch.topk(ub, min(top + 1, n), sorted=True)
            tau = float(vals[top]) if top < n else -1.0
            pool, pmd = pool[:top], vals[:top].clone()
            if not float(pmd[0]) > covered:
                break  # every patch is a pick or a duplicate of one: nothing left to cover
            pf, psq = self._take(pool), sq[pool]
            pg = self._metric_of(pf)  # the pool's rows times G: a pick's distances are one matrix-vector product
            pending: list[int] = []
            while len(selected) < k:
                j = int(torch.argmax(pmd))
                m = float(pmd[j])
                if m < tau or m <= covered:
                    break
                p = int(pool[j])
                selected.append(p)
                pending.append(p)
                d2 = torch.addmv(psq, pg, pf[j], alpha=-2.0).add_(sq[p])
                torch.minimum(pmd, d2, out=pmd)
                pmd[j] = 0.0
                if len(selected) >= next_report:
                    next_report += tick
                    if self.progress is not None:
                        self.progress(len(selected), k)
                    self._check_stop(force=True)
                else:
                    self._check_stop()
            if len(selected) >= k:
                break  # the last picks' distances are never needed (anomalib does not apply its last one either)
            self._apply(sq, ub, pending)
            ub[torch.tensor(pending, dtype=torch.long)] = 0.0
            refreshes += 1
        if self.progress is not None:
            self.progress(len(selected), k)
        self.stats.update(refreshes=refreshes, seconds=time.perf_counter() - t0, picks=len(selected))
        return selected

    def _apply(self, sq: torch.Tensor, ub: torch.Tensor, centres: list[int]) -> None:
        """ub = min(ub, squared distance to each of ``centres``), in row chunks of one matrix product each.
        Two buffers per call, reused by every chunk: fresh ones per chunk would each be page-faulted in."""
        if not centres:
            return
        idx = torch.tensor(centres, dtype=torch.long)
        cg, csq = self._metric_of(self._take(idx)).T.contiguous(), sq[idx]
        n = self._raw.shape[0]
        rows = min(n, self._chunk_rows(len(centres)))
        buf = torch.empty((rows, self._raw.shape[1]))
        blk = torch.empty((rows, len(centres)))
        for lo in range(0, n, rows):
            hi = min(n, lo + rows)
            out = torch.addmm(csq.unsqueeze(0), self._rows(lo, hi, buf), cg, alpha=-2.0, out=blk[: hi - lo])
            best = out.amin(dim=1).add_(sq[lo:hi]).clamp_(min=0.0)
            torch.minimum(ub[lo:hi], best, out=ub[lo:hi])
            self._check_stop()

    def sample_coreset(self) -> torch.Tensor:
        return self.embedding[self.select_coreset_idxs()]
