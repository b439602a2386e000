"""EfficientAD (Batzner et al., WACV 2024): student-teacher network plus autoencoder, trained for a number of steps.

Its teacher is distilled from a WideResNet on ImageNet and published by anomalib; offline without that file only
a pipeline check with a random teacher is possible, and such runs are labelled everywhere they are shown.
"""

from __future__ import annotations

from core.config import Settings
from core.errors import WeightsError, WorkbenchError
from core.models import weights
from core.models.cost import (
    FIT_OVERHEAD_S,
    INDEX_S_PER_IMAGE,
    RUN_OVERHEAD_S,
    TIMING_IMAGES,
    TORCH_BASE_MB,
    Estimate,
)
from core.models.registry import Hooks, ModelEntry, Param, register, resize_normalize

UNTRAINED_TEACHER_WARNING = (
    "EfficientAD with an UNTRAINED (random) teacher: not a real EfficientAD result. Use only to exercise the pipeline."
)

# Seconds per EfficientAD training step on this product's reference machine (2 CPU cores, 256 px, batch 1),
# measured with `benchmarks/efficientad_steps.py` (README: "EfficientAD on CPU"). The page's time estimate
# uses them; a GPU is ~35× faster per step (H100: 0.036 s, benchmarks/gpu_check.sh).
EFFICIENTAD_S_PER_STEP = {"small": 1.24, "medium": 3.8}
# Teacher statistics, validation, testing, timing and similarity indexing around the steps, measured on MVTec
# grid (342 images): a default 500-step run took 14.5 min end to end, 10 of them steps. Less on smaller sets.
EFFICIENTAD_OVERHEAD_MIN = 4.5


def efficientad_training_minutes(max_steps: int, model_size: str = "small") -> float:
    """Minutes of training steps alone on 2 CPU cores."""
    return max_steps * EFFICIENTAD_S_PER_STEP[model_size] / 60


def efficientad_time_note(max_steps: int, model_size: str = "small") -> str:
    """What the launch form tells a user about an EfficientAD run's duration on a 2-core CPU."""
    train = efficientad_training_minutes(max_steps, model_size)
    total = train + EFFICIENTAD_OVERHEAD_MIN
    per_step = EFFICIENTAD_S_PER_STEP[model_size]
    verdict = (
        "fits within ~15 minutes"
        if total <= 15
        else f"is over the ~15 minutes a demo allows: lower the steps to about "
        f"{int((15 - EFFICIENTAD_OVERHEAD_MIN) * 60 / per_step) // 50 * 50}"
    )
    return (
        f"On 2 CPU cores one EfficientAD-{model_size[0].upper()} training step takes about {per_step:.1f} s: "
        f"{max_steps} steps train in ~{train:.0f} min, plus up to ~{EFFICIENTAD_OVERHEAD_MIN:.1f} min for statistics, "
        f"testing, timing and indexing (an MVTec-sized category), so this run {verdict}. More steps give a better "
        "model (on grid, quality was still rising "
        f"at 600 steps); a GPU is about 35× faster per step."
    )


def _build(p: dict, cfg: Settings, hooks: Hooks, pre_trained: bool):
    from anomalib.models import EfficientAd  # anomalib: not when the registry loads (page start-up)

    size = p["model_size"]
    untrained = p["teacher"] == "untrained"
    imagenet_dir = p["imagenet_dir"] or (str(cfg.imagenet_dir) if cfg.imagenet_dir else "")
    if pre_trained:
        if not untrained and not weights.efficientad_teacher_available(size) and cfg.offline:
            raise WeightsError(
                f"EfficientAD's pretrained teacher ({size}) is not available offline. Put "
                f"pretrained_teacher_{size}.pth at {weights.efficientad_teacher_path(size)} "
                f"(`aw weights import pretrained_teacher_{size}.pth`) or go online so anomalib "
                "downloads it. (For a pipeline check only, choose teacher='untrained'.)"
            )
        if not imagenet_dir and cfg.offline:
            raise WorkbenchError(
                "EfficientAD needs a folder of natural images for its penalty loss (ImageNet or Imagenette: "
                "any folder with at least one sub-folder of images). Set AW_IMAGENET_DIR or the 'imagenet_dir' "
                "parameter; online, anomalib downloads Imagenette."
            )
    imagenet_dir = imagenet_dir or str(cfg.datasets_dir / "imagenette")

    class WorkbenchEfficientAd(EfficientAd):
        """EfficientAD that honours an explicit untrained-teacher choice."""

        def prepare_pretrained_model(self) -> None:
            if untrained:
                return  # the registry labels such runs everywhere they are shown
            super().prepare_pretrained_model()

    return WorkbenchEfficientAd(
        imagenet_dir=imagenet_dir,
        model_size=size,
        lr=p["lr"],
        pre_processor=resize_normalize(p["image_size"]),
        evaluator=False,
        visualizer=False,
    )


def _estimate(p: dict, prof, slow: float):
    step = EFFICIENTAD_S_PER_STEP[p["model_size"]] * (p["image_size"] / 256) ** 2 * slow
    per_image = 0.2 * (p["image_size"] / 256) ** 2 * slow  # forward pass of teacher, student and autoencoder
    parts = {
        "teacher statistics": prof.n_train * per_image,
        "training": p["max_steps"] * step,
        "validation and testing": 2 * prof.n_test * per_image,
        "timing": TIMING_IMAGES * per_image,
        "indexing": prof.n_train * per_image + prof.n_images * INDEX_S_PER_IMAGE * slow,
    }
    fit = FIT_OVERHEAD_S * slow + parts["teacher statistics"] + parts["training"] + prof.n_test * per_image
    return Estimate(
        seconds=(RUN_OVERHEAD_S + FIT_OVERHEAD_S) * slow + sum(parts.values()),
        fit_seconds=fit,
        peak_mb=TORCH_BASE_MB + 700,
        parts=parts,
        facts={"train images": prof.n_train, "test images": prof.n_test, "steps": p["max_steps"]},
    )


def _unavailable(cfg: Settings) -> str | None:
    if cfg.offline and not weights.efficientad_teacher_available("small"):
        return (
            "its pretrained teacher is not on this machine and it is offline (an untrained teacher is only a "
            "pipeline check)"
        )
    if cfg.offline and not cfg.imagenet_dir:
        return "it needs a folder of natural images (AW_IMAGENET_DIR) offline"
    return None


def _time_note(p: dict) -> str:
    return efficientad_time_note(int(p["max_steps"]), p["model_size"])


register(
    ModelEntry(
        name="efficientad",
        label="EfficientAD",
        anomalib_class="EfficientAd",
        description="Student–teacher network plus autoencoder; trained for a number of steps.",
        params=(
            Param(
                "model_size",
                "small",
                "Network size (on 2 CPU cores small is ~3× faster: 1.2 vs 3.8 s per step).",
                "choice",
                ("small", "medium"),
            ),
            # 500: about 10 minutes of steps on 2 CPU cores, so a default run with its testing stays within ~15 minutes;
            # on real grid, quality was still rising at 600 steps (measured with a random teacher only, as no pretrained
            # one is available offline: benchmarks/efficientad_steps.py), so more steps help where time allows.
            Param(
                "max_steps",
                500,
                "Training steps (paper: 70,000 on a GPU). On 2 CPU cores a small model takes "
                "~1.2 s per step, so 500 ≈ 10 minutes; a GPU is ~35× faster per step.",
                "int",
                min=1,
                max=200_000,
            ),
            Param("lr", 1e-4, "Adam learning rate.", "float", min=1e-6, max=1e-1),
            Param(
                "image_size",
                256,
                "Images are resized to this square size (EfficientAD needs ≥ 256).",
                "int",
                min=256,
                max=1024,
            ),
            Param(
                "teacher",
                "pretrained",
                "'pretrained' = anomalib's distilled teacher (real results); "
                "'untrained' = random teacher, only to test the pipeline.",
                "choice",
                ("pretrained", "untrained"),
            ),
            Param(
                "imagenet_dir",
                "",
                "Folder of natural images (≥ 1 sub-folder) for the penalty loss; empty = "
                "AW_IMAGENET_DIR, or Imagenette downloaded by anomalib when online.",
                "str",
            ),
        ),
        build=_build,
        stock_kwargs=lambda p, backbone: dict(model_size=p["model_size"]),
        trainer_kwargs=lambda p: {"max_steps": p["max_steps"], "max_epochs": -1},
        train_batch_size=1,  # EfficientAD's training step requires batch size 1
        embedding_space=lambda p: f"efficientad-{p['model_size']}-{p['teacher']}",
        warnings=lambda p: [UNTRAINED_TEACHER_WARNING] if p["teacher"] == "untrained" else [],
        estimate=_estimate,
        feature_submodule="teacher",  # the teacher normalises its input itself
        time_note=_time_note,
        channels_last=True,
        unavailable=_unavailable,
    )
)
