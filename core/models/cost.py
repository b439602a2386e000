"""What a run costs: the result type of every model's estimate and the reference machine's constants.

The models layer owns these so a registry entry's cost hook (``ModelEntry.estimate`` or ``Cost``) can build an
``Estimate`` without importing the engine; ``core.engine.estimate`` reads the dataset and this machine's speed and
calls the hooks. Constants were measured on the reference machine (2 cores) by ``benchmarks/scaling.py`` and
``benchmarks/mvtec_benchmark.py``.

    >>> from core.models.cost import DatasetProfile, estimate_from_cost
    >>> from core.models import get_entry
    >>> est = estimate_from_cost({"image_size": 256}, DatasetProfile(200, 80, 1.0), 1.0, get_entry("padim").cost)
    >>> est.summary()  # doctest: +SKIP
    'Expected: about 1 min 02 s in all (...); peak memory about 1.8 GB.'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.models import weights

# Reference machine of the constants in the registry (2 cores): its matrix-product speed, measured with
# ``gemm_gflops()`` (the scaling benchmark prints it with every table).
REFERENCE_GFLOPS = 176.0
# Reference-machine constants shared by the models' estimates (benchmarks/scaling.py, benchmarks/mvtec_benchmark.py).
DECODE_S_PER_MEGAPIXEL = 0.009  # PNG decode + resize
FIT_OVERHEAD_S = 3.0  # model set-up and Lightning around the fit
RUN_OVERHEAD_S = 10.0  # process start (torch, anomalib imports), writing results
TORCH_BASE_MB = 1450.0  # a run's process with torch, anomalib, Lightning and a backbone loaded
# The timing step scores a fixed sample whatever the data size (core.engine.latency.measure: 2 warm-up, 16 at batch
# 1, 16 at batch 4, 16 at batch 8).
TIMING_IMAGES = 50
# Indexing an image whose vectors the run already pooled: the Qdrant upsert and the retrieval check (grid: 342
# points in 0.3 s; the pooling itself is inside the test pass and PatchCore's fit).
INDEX_S_PER_IMAGE = 0.002


@dataclass(frozen=True)
class DatasetProfile:
    """What a run's cost depends on, read before the run."""

    n_train: int
    n_test: int
    megapixels: float  # mean size of a sample of the images, in millions of pixels

    @property
    def n_images(self) -> int:
        return self.n_train + self.n_test


@dataclass
class Estimate:
    seconds: float  # the whole run: fit, testing, timing, indexing
    fit_seconds: float
    peak_mb: float
    parts: dict[str, float] = field(default_factory=dict)  # seconds by phase
    facts: dict[str, float] = field(default_factory=dict)  # patches, bank size, …
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {fmt_duration(v)}" for k, v in self.parts.items() if v >= 1)
        return (
            f"Expected: about {fmt_duration(self.seconds)} in all ({parts}); peak memory about "
            f"{self.peak_mb / 1024:.1f} GB."
        )


def fmt_duration(seconds: float | None) -> str:
    """12 s · 3 min 05 s · 1 h 02 min; '–' when unknown."""
    if seconds is None:
        return "–"
    seconds = int(round(max(0.0, seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def backbone_ratio(backbone: str | None) -> float:
    """A backbone's feature extraction time relative to EfficientNet-Lite0's (1.0 for none or an unknown one)."""
    if backbone not in weights.BACKBONES:
        return 1.0
    return weights.BACKBONES[backbone].extract_s_256 / weights.LITE0_EXTRACT_S


def estimate_from_cost(p: dict, prof: DatasetProfile, slow: float, cost, epochs: int = 1) -> Estimate:
    """The estimate of a model described by a ``models.Cost`` (reference seconds per 256² image and epoch):
    training is ``epochs`` passes over the training images, testing one forward per test image, timing and
    one per timed image (a fixed sample), indexing one backbone pass per training image."""
    # The reference seconds were measured on EfficientNet-Lite0: another backbone scales them by its extraction time
    # (an upper bound for the models whose own head, not the backbone, takes most of the time).
    scale = (p.get("image_size", 256) / 256) ** 2
    time_scale = scale * backbone_ratio(p.get("backbone"))
    decode = DECODE_S_PER_MEGAPIXEL * prof.megapixels
    train = prof.n_train * ((cost.train_s * time_scale) * epochs + decode) * slow
    score = (cost.score_s * time_scale + decode) * slow
    parts = {
        "training" if epochs > 1 else "feature extraction": train,
        "testing": prof.n_test * score,
        "timing": TIMING_IMAGES * score,
        # test images' vectors come from the test pass; each training image gets one backbone-only pass
        "indexing": prof.n_train * score + prof.n_images * INDEX_S_PER_IMAGE * slow,
    }
    fit = FIT_OVERHEAD_S * slow + train
    peak = TORCH_BASE_MB + cost.fixed_mb * scale + cost.fit_mb * scale * prof.n_train
    return Estimate(
        seconds=RUN_OVERHEAD_S * slow + fit + parts["testing"] + parts["timing"] + parts["indexing"],
        fit_seconds=fit,
        peak_mb=peak,
        parts=parts,
        facts={"train images": prof.n_train, "test images": prof.n_test, "epochs": epochs},
    )
