"""Fast, exact k-center-greedy coreset selection for PatchCore.

anomalib's :class:`~anomalib.models.components.KCenterGreedy` recomputes the distance of *every* patch
vector to each new centre (``torch.linalg.norm(features - center, dim=1)``): on the CPU that is hours for
a 10 % coreset of a few hundred thousand patches. :class:`FastKCenterGreedy` selects **the identical index
sequence** (same random projection, same ``torch.randint`` start, same distance values bit for bit, same
first-index tie-breaking) but only computes the distances that can change:

* every point is assigned to its nearest centre so far; a new centre ``c`` can only lower the distance of
  a point ``x`` in cluster ``a`` if ``d(c, a) < 2·mindist(x)`` (triangle inequality), so whole clusters with
  ``d(c, a) >= 2·radius(a)`` and most points of the others are skipped;
* the survivors are screened with a lower bound from a PCA of the features: the distance in the top
  principal components plus the difference of the residual norms, ``||P(x-c)||² + (||Qx|| - ||Qc||)²
  <= ||x-c||²``;
* only points that pass both tests get their distance computed, with anomalib's own formula
  (``torch.linalg.norm(features[idx] - center, dim=1)``, which gives each row the same value as the full
  computation), and ``min_distances`` is updated where it decreases.

Every pruning test has a safety margin (relative ``1e-3`` plus an absolute term far above float32 rounding),
so a point is skipped only when its distance provably cannot go below its current minimum: the
``min_distances`` vector is identical to anomalib's after every step, hence so is every argmax.

The run registry shows coreset progress through ``progress(done, total)`` (called about every 1 %) and
cancels through ``should_stop()`` (checked at the same points), which raises :class:`CoresetCancelled`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch

from core.errors import RunCancelled

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
        if features.dtype in (torch.float32, torch.float64) and self.coreset_size > 1:
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
        if force or done >= self._next_report:
            while self._next_report <= done:
                self._next_report += self._tick
            if self.progress is not None:
                self.progress(done, self.coreset_size)
            self._check_stop(force=True)
        elif self.should_stop is not None and (done & 63) == 0:
            self._check_stop()

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
            x = f_np[lo:lo + chunk].astype(np.float64)
            g = x @ basis_mean
            p = g[:, :m] - mean_proj
            sq = np.einsum("ij,ij->i", x, x) - 2.0 * g[:, m] + mean_sq
            res = np.sqrt(np.maximum(sq - np.einsum("ij,ij->i", p, p), 0.0))
            z[lo:lo + chunk, :m] = p
            z[lo:lo + chunk, m] = res
            scale_sq = max(scale_sq, float(sq.max()))
        scale = float(np.sqrt(max(scale_sq, 0.0)))
        m2 = min(_PCA_COMPONENTS_CENTRES, d)
        return z, scale, mean_np, np.ascontiguousarray(vecs[:, :m2])

    def _select_pruned(self, features: torch.Tensor, start: int) -> list[int]:
        # Thousands of small operations: one thread avoids OpenMP/BLAS wake-up and spin costs (and changes
        # no value: every distance is a per-row reduction).
        threads = torch.get_num_threads()
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (an anomalib dependency)
            limits = contextlib.nullcontext()
        else:
            limits = threadpool_limits(limits=1)
        try:
            torch.set_num_threads(1)
            with limits:
                z, scale, mean, basis2 = self._lower_bound_coords(features)
                return self._greedy_loop(features, start, z, scale, mean, basis2)
        finally:
            torch.set_num_threads(threads)

    def _greedy_loop(self, features: torch.Tensor, start: int, z: np.ndarray, scale: float,
                     mean: np.ndarray, basis2: np.ndarray) -> list[int]:
        self._setup_reporting()
        n = features.shape[0]
        n_iter = self.coreset_size - 1
        abs_margin = _ABS_FACTOR * scale + 1e-30
        rel = 1.0 + _REL
        md_t = torch.empty(n, dtype=features.dtype)  # anomalib's min_distances, shape (n,) not (n, 1)
        md = md_t.numpy()
        f_np = features.numpy()
        take = np.take

        def exact(rows: np.ndarray, center: torch.Tensor) -> np.ndarray:
            # anomalib's formula, row by row the same value as torch.linalg.norm(features - center, dim=1)
            sub = torch.from_numpy(take(f_np, rows, axis=0))
            sub.sub_(center)
            return torch.linalg.vector_norm(sub, ord=2, dim=1).numpy()

        # One cluster per centre (in selection order). Members are kept sorted by (-min_distance, index):
        # the first member is the cluster's farthest point (smallest index among ties), and the points
        # that can move to a new centre are a prefix.
        mem: list[np.ndarray] = []
        key: list[np.ndarray] = []                 # -min_distance of the members, ascending
        rad = np.full(n_iter, -np.inf)            # the cluster's largest min_distance (-inf: empty)
        thr2 = np.full(n_iter, -1.0)              # (2 rad (1+rel) + abs)^2, -1 for an empty cluster
        cz = np.zeros((n_iter, z.shape[1]), dtype=np.float64)  # centres' lower-bound coordinates
        cz2 = np.zeros(n_iter, dtype=np.float64)
        cidx = np.zeros(n_iter, dtype=np.int64)
        cz_hi = np.zeros((n_iter, basis2.shape[1] + 1), dtype=np.float64)

        csize = np.zeros(n_iter, dtype=np.int64)

        def set_cluster(a: int, members: np.ndarray, keys: np.ndarray) -> None:
            mem[a] = members
            csize[a] = len(members)
            key[a] = keys
            if len(keys):
                r = -float(keys[0])
                rad[a] = r
                t = 2.0 * r * rel + abs_margin
                thr2[a] = t * t
            else:
                rad[a] = -np.inf
                thr2[a] = -1.0

        def new_cluster(points: np.ndarray, values: np.ndarray) -> None:
            order = np.lexsort((points, -values))
            mem.append(None)  # type: ignore[arg-type]
            key.append(None)  # type: ignore[arg-type]
            set_cluster(len(mem) - 1, points[order], -values[order])

        small = 128  # clusters up to this size are scanned whole instead of binary-searched
        stats = {"candidate_clusters": 0, "bound_checks": 0, "exact_distances": 0}
        idx = start
        selected = [idx]
        self._report(1)
        for t in range(n_iter):
            center = features[idx]
            zc = z[idx].astype(np.float64)
            cz[t] = zc
            zc2 = float(zc @ zc)
            cz2[t] = zc2
            cidx[t] = idx
            xc = f_np[idx].astype(np.float64) - mean
            zc_hi = cz_hi[t]
            zc_hi[:-1] = xc @ basis2
            zc_hi[-1] = np.sqrt(max(float(xc @ xc) - float(zc_hi[:-1] @ zc_hi[:-1]), 0.0))
            if t == 0:
                torch.linalg.vector_norm(features - center, ord=2, dim=1, out=md_t)
                stats["exact_distances"] += n
                new_cluster(np.arange(n, dtype=np.int64), md.copy())
            else:
                # 1. clusters a that can hold a point closer to c than to a: d(c, a) < 2 rad(a)
                lb2 = cz2[:t] + zc2
                lb2 -= 2.0 * (cz[:t] @ zc)
                cand = np.flatnonzero(lb2 < thr2[:t])
                moved_pts = None
                if len(cand):
                    # finer lower bound of d(c, a) (more components), used as d(c, a) from here on
                    g2 = take(cz_hi, cand, axis=0)
                    g2 -= zc_hi
                    lbc2 = np.einsum("ij,ij->i", g2, g2)
                    keep = np.flatnonzero(lbc2 < take(thr2, cand))
                    cand = take(cand, keep)
                    dca = np.sqrt(np.maximum(take(lbc2, keep), 0.0))
                if len(cand):
                    stats["candidate_clusters"] += len(cand)
                    # 2. per point: d(c, a) < 2 md(x), i.e. md(x) > lim(a)
                    lim = (dca - abs_margin) / (2.0 * rel)
                    cand_list = cand.tolist()
                    parts = [mem[a] for a in cand_list]
                    plens = csize[cand]
                    for j in np.flatnonzero(plens > small).tolist():
                        p = int(np.searchsorted(key[cand_list[j]], -lim[j], side="left"))
                        parts[j] = parts[j][:p]
                        plens[j] = p
                    allm = np.concatenate(parts) if len(parts) > 1 else parts[0]
                    mdp = take(md, allm)
                    s1 = np.flatnonzero(mdp > np.repeat(lim, plens))
                    # 3. PCA lower bound: ||Z x - Z c|| < md(x)
                    pts = take(allm, s1)
                    mdp = take(mdp, s1)
                    g = take(z, pts, axis=0)
                    g -= z[idx]
                    lbp = np.einsum("ij,ij->i", g, g)
                    bnd = mdp * rel + abs_margin
                    s2 = np.flatnonzero(lbp < bnd * bnd)
                    stats["bound_checks"] += len(pts)
                    stats["exact_distances"] += len(s2)
                    if len(s2):
                        pe = take(pts, s2)
                        d = exact(pe, center)
                        mv = np.flatnonzero(d < take(mdp, s2))
                        if len(mv):
                            moved_pts = take(pe, mv)
                            moved_val = take(d, mv)
                            md[moved_pts] = moved_val
                            flag = np.zeros(len(allm), dtype=bool)
                            flag[take(s1, take(s2, mv))] = True
                            offs = np.zeros(len(cand) + 1, dtype=np.int64)
                            np.cumsum(plens, out=offs[1:])
                            nonempty = np.flatnonzero(plens)
                            lost = nonempty[np.logical_or.reduceat(flag, offs[nonempty])]
                            for j in lost.tolist():
                                a = int(cand[j])
                                lo, hi = int(offs[j]), int(offs[j + 1])
                                keep_seg = ~flag[lo:hi]
                                plen = hi - lo
                                m_a, k_a = mem[a], key[a]
                                if plen == len(m_a):
                                    set_cluster(a, m_a[keep_seg], k_a[keep_seg])
                                else:
                                    set_cluster(a, np.concatenate((m_a[:plen][keep_seg], m_a[plen:])),
                                                np.concatenate((k_a[:plen][keep_seg], k_a[plen:])))
                if moved_pts is None:
                    mem.append(np.empty(0, dtype=np.int64))
                    key.append(np.empty(0, dtype=md.dtype))
                else:
                    new_cluster(moved_pts, moved_val)

            # 4. argmax of min_distances, first index among ties (as torch.max does)
            k = t + 1
            top = rad[:k].max()
            if top > 0:
                ties = np.flatnonzero(rad[:k] == top)
                a = int(ties[0])
                if len(ties) > 1:
                    a = int(ties[np.argmin([mem[b][0] for b in ties.tolist()])])
                idx = int(mem[a][0])
                set_cluster(a, mem[a][1:], key[a][1:])  # a selected point stays at distance 0
            else:  # every distance is 0: anomalib's torch.max picks the first index
                idx = int(torch.max(md_t, dim=0)[1])
            md[idx] = 0.0
            selected.append(idx)
            self._report(len(selected))

        self.min_distances = md_t.unsqueeze(1)
        stats["iterations"] = n_iter
        self.stats = stats
        return selected


def select_coreset(
    embedding: torch.Tensor,
    sampling_ratio: float,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> torch.Tensor:
    """PatchCore's memory bank: the coreset rows of ``embedding`` (same rows as anomalib's sampler)."""
    sampler = FastKCenterGreedy(embedding, sampling_ratio, progress=progress, should_stop=should_stop)
    return sampler.sample_coreset()
