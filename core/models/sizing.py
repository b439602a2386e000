"""The image size a model sees, chosen from the data when the user leaves it to us.

A 1024² part photographed for inspection and scored at 256² loses its small defects: on real MVTec grid, PatchCore
(EfficientNet-Lite0) measured image / pixel AUROC 0.983 / 0.973 at 256 px and 1.000 / 0.993 at 512 px, with FPR at
100 % recall 0.000 (README, "Image size that follows the data"). The same change on a set of 256² images went the
other way (image AUROC −0.013, pixel AUROC −0.060, 5× the fit): enlarging adds no detail. So the default follows the
images' own size. At 512 px an image has 4× the patches, and each one is searched against the memory bank; the bank
is capped lower so that a test image costs at most about 2× its 256-px time (grid, 8,000 patches: 228 ms per image
against 162 ms at 256 px, 1.4×; fit 100 s).

``image_size = AUTO`` (0) means "follow the data"; a run always records the size it used, and why:

    >>> from core.models.cost import DatasetProfile
    >>> choice = patchcore_choice(DatasetProfile(n_train=264, n_test=78, megapixels=1.05))
    >>> choice.params
    {'image_size': 512, 'max_bank_size': 8000}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from core.models.cost import DatasetProfile

AUTO = 0  # image_size 0: follow the data
DATA_FREE_SIZE = 256  # what AUTO means where no data is known yet (anomalib's usual size)
# Images whose typical side is at least this are scored at HIGH_RES_SIZE: MVTec AD's photos are 700–1024 px.
HIGH_RES_SIDE = 768
HIGH_RES_SIZE = 512
MEMORY_SHARE = 0.5  # of physical memory: the most a size chosen for the user may plan a fit to hold
HIGH_RES_BANK = 8_000  # PatchCore's bank cap at HIGH_RES_SIZE (grid: 1.000 / 0.993, e2e 1.4x the 256-px run)


@dataclass(frozen=True)
class SizeChoice:
    """Parameters chosen from the data, and the sentence the launch form and ``aw train`` show for them."""

    params: dict
    why: str


def typical_side(profile: DatasetProfile) -> int:
    """The side of a square with the images' mean pixel count (1024 for MVTec grid)."""
    return int(round(math.sqrt(max(profile.megapixels, 0.0) * 1e6)))


def memory_budget_mb() -> float:
    """What a fit chosen for the user may plan to hold: half of this machine's physical memory (the same on every
    launch, unlike the memory free at the moment)."""
    return MEMORY_SHARE * psutil.virtual_memory().total / 2**20


# What 512 px bought on real MVTec grid (1024²) against 256 px, with Lite0 (the README's sweeps: with each of Lite0,
# Lite1, Lite2 and MobileNetV2 it raised image AUROC to 0.996-1.000). PaDiM's gain depended on the backbone there
# (Lite0 +0.006, MobileNetV2 -0.034), so PaDiM keeps its fixed size.
PATCHCORE_GRID = "MVTec grid, 1024²: image / pixel AUROC 1.000 / 0.993 at 512 px against 0.983 / 0.973 at 256 px"


def follow_data(
    profile: DatasetProfile | None,
    evidence: str,
    high: dict | None = None,
    detail: str = "",
    peak_mb: Callable[[dict], float] | None = None,
    memory_mb: float | None = None,
) -> SizeChoice:
    """The size for this data: ``HIGH_RES_SIZE`` (with ``high``'s other parameters, ``detail`` saying what they are)
    for images of ``HIGH_RES_SIDE`` px and more, else ``DATA_FREE_SIZE``. ``evidence`` is the measured gain quoted in
    the reason. ``peak_mb``: the fit's estimated peak memory for a set of parameters; 512 px holds 4x the features, so
    a large set (or a wide backbone) stays at 256 px where 512 px would not fit in ``memory_mb`` (default:
    ``memory_budget_mb()``)."""
    if profile is None:
        return SizeChoice({"image_size": DATA_FREE_SIZE}, f"{DATA_FREE_SIZE} px: the images' size is not known yet.")
    side = typical_side(profile)
    if side >= HIGH_RES_SIDE:
        params = {"image_size": HIGH_RES_SIZE, **(high or {})}
        need = peak_mb(params) if peak_mb else 0.0
        budget = memory_budget_mb() if memory_mb is None else memory_mb
        if need > budget:
            return SizeChoice(
                {"image_size": DATA_FREE_SIZE},
                f"{DATA_FREE_SIZE} px: the images are about {side}×{side}, but at {HIGH_RES_SIZE} px this fit would "
                f"need about {need / 1024:.1f} GB for its {profile.n_train:,} images' features, more than the "
                f"{budget / 1024:.1f} GB planned for a run here (half this machine's memory). Set "
                f"image_size={HIGH_RES_SIZE} to try it anyway, or train on fewer images.",
            )
        return SizeChoice(
            params,
            f"{HIGH_RES_SIZE} px{detail}: the images are about {side}×{side}, and at {DATA_FREE_SIZE} px a defect a "
            f"few pixels wide shrinks below one patch ({evidence}).",
        )
    if side <= DATA_FREE_SIZE * 1.25:
        why = (
            f"{DATA_FREE_SIZE} px: the images are about {side}×{side}, and enlarging them adds no detail (on a real "
            f"256² set, PatchCore at {HIGH_RES_SIZE} px lost 0.013 image AUROC and took 5× the fit)."
        )
    else:
        why = (
            f"{DATA_FREE_SIZE} px: the images are about {side}×{side}; {HIGH_RES_SIZE} px is chosen from "
            f"{HIGH_RES_SIDE} px up, where it was measured to pay. A sweep over image_size checks it on your data."
        )
    return SizeChoice({"image_size": DATA_FREE_SIZE}, why)


def patchcore_choice(
    profile: DatasetProfile | None,
    max_bank_size: int | None = None,
    peak_mb: Callable[[dict], float] | None = None,
    memory_mb: float | None = None,
) -> SizeChoice:
    """PatchCore's size for this data. ``max_bank_size``: a cap the user chose (None: the default, lowered to
    ``HIGH_RES_BANK`` at 512 px so that a test image costs at most about 2x its 256-px time)."""
    bank = HIGH_RES_BANK if max_bank_size is None else max_bank_size
    return follow_data(
        profile,
        PATCHCORE_GRID,
        high={"max_bank_size": bank},
        detail=f", the bank capped at {bank:,} patches",
        peak_mb=peak_mb,
        memory_mb=memory_mb,
    )
