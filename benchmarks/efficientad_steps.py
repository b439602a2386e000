"""EfficientAD on CPU: seconds per training step, and how image AUROC grows with steps, in one training run.

    .venv/bin/python benchmarks/efficientad_steps.py [--steps 25 50 100 200 300 400] [--teacher untrained]
        [--model-size small] [--penalty-dir DIR] [--threads N]

One EfficientAD is trained, by default on the synthetic demo dataset (``core.data.demo_data``: 24 normal training
images, 8 good + 18 defective test images with exact masks, 256²; ``--dataset mvtec:grid`` for real data)
through the workbench's own model build and
anomalib's Engine. At each checkpoint step the training clock is paused and the model is evaluated as
anomalib evaluates it: map-normalisation quantiles from the good validation images, then image and pixel
AUROC and AUPRO on the test set (``core.engine.evaluation``). Training time excludes evaluation time.

The teacher: anomalib's pretrained (distilled) teacher is used when it is available (online, or seeded at
``core.models.weights.efficientad_teacher_path``); otherwise only ``--teacher untrained`` runs, and every line of
output says so. An untrained teacher does exactly the same arithmetic (so step times are real EfficientAD
step times) but its AUROC describes a random-feature student–teacher model, not published EfficientAD.

The penalty loss needs natural images (ImageNet/Imagenette in the paper). Offline, and without
``--penalty-dir``, the benchmark gathers the natural photographs bundled with scikit-image and scikit-learn
(astronaut, coffee, chelsea, china, flower, ...) into a temporary folder and says how many it used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/speed.py: spinning threads collapse

import numpy as np  # noqa: E402

from core import models  # noqa: E402
from core.cli.format import fmt  # noqa: E402
from core.config import settings  # noqa: E402
from core.data import datasets  # noqa: E402
from core.engine.evaluation import evaluate  # noqa: E402
from core.engine.latency import peak_rss_mb  # noqa: E402
from core.models import weights  # noqa: E402

COLUMNS = ["step", "train s", "s/step (since last)", "image AUROC", "pixel AUROC", "AUPRO", "image F1", "teacher"]
# Natural photographs that ship inside installed packages (file names relative to the package folder).
BUNDLED_PHOTOS = {
    "skimage": [
        "data/astronaut.png",
        "data/coffee.png",
        "data/chelsea.png",
        "data/rocket.jpg",
        "data/horse.png",
        "data/motorcycle_left.png",
        "data/motorcycle_right.png",
        "data/hubble_deep_field.jpg",
        "data/retina.jpg",
        "data/brick.png",
        "data/grass.png",
        "data/gravel.png",
        "data/camera.png",
        "data/coins.png",
        "data/moon.png",
        "data/page.png",
        "data/ihc.png",
        "data/color.png",
    ],
    "sklearn": ["datasets/images/china.jpg", "datasets/images/flower.jpg"],
    "matplotlib": ["mpl-data/sample_data/grace_hopper.jpg"],
}


def bundled_penalty_dir(target: Path) -> int:
    """Copy the bundled natural photos into ``target/photos`` (an ImageFolder layout); returns how many."""
    import importlib.util

    folder = target / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for package, files in BUNDLED_PHOTOS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        base = Path(list(spec.submodule_search_locations)[0])
        for rel in files:
            if (base / rel).is_file():
                shutil.copy(base / rel, folder / f"{package}_{Path(rel).name}")
                n += 1
    return n


def accelerator_label(accelerator: str, threads: int) -> str:
    import torch

    if accelerator != "cpu" and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}"
    return f"CPU, {threads} threads"


def evaluate_now(module, datamodule) -> dict:
    """anomalib's own evaluation recipe for EfficientAD: quantiles from good validation images, then score."""
    import torch

    was_training = module.training
    module.eval()
    with torch.inference_mode():
        module.model.quantiles.update(module.map_norm_quantiles(datamodule.val_dataloader()))
        scores, labels, kinds, maps, masks = [], [], [], [], []
        for batch in datamodule.test_dataloader():
            # The datamodule yields files at full size; the module's pre-processor resizes them in training.
            out = module.model(module.pre_processor.transform(batch.image.to(module.device)))
            scores.append(out.pred_score.flatten().cpu().numpy())
            maps.append(out.anomaly_map.squeeze(1).cpu().numpy())
            labels.append(batch.gt_label.numpy().astype(int))
            gt = torch.nn.functional.interpolate(batch.gt_mask[:, None].float(), size=out.anomaly_map.shape[-2:])
            masks.append(gt[:, 0].numpy() > 0.5)
            kinds += [Path(p).parent.name for p in batch.image_path]
    if was_training:
        module.train()
    return evaluate(np.concatenate(scores), np.concatenate(labels), kinds, np.concatenate(maps), np.concatenate(masks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 300, 400])
    parser.add_argument(
        "--teacher",
        choices=["pretrained", "untrained"],
        default=None,
        help="default: pretrained when available, else untrained (labelled)",
    )
    parser.add_argument("--dataset", default="demo", help="'demo' (synthetic) or mvtec:<category>, e.g. mvtec:grid")
    parser.add_argument("--model-size", choices=["small", "medium"], default="small")
    parser.add_argument("--penalty-dir", default=None, help="natural images, one sub-folder deep (ImageNet layout)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--accelerator", default="cpu", help="cpu (the product's target here), gpu or auto")
    args = parser.parse_args()

    import torch
    from anomalib.engine import Engine
    from lightning.pytorch import Callback, seed_everything

    torch.set_num_threads(args.threads)
    cfg = settings()
    teacher = args.teacher or ("pretrained" if weights.efficientad_teacher_available(args.model_size) else "untrained")
    if teacher == "pretrained" and not weights.efficientad_teacher_available(args.model_size) and cfg.offline:
        print(
            f"EfficientAD's pretrained teacher is not at {weights.efficientad_teacher_path(args.model_size)}; "
            "run with --teacher untrained for step times (its AUROC is not an EfficientAD result)."
        )
        return 2
    checkpoints = sorted(set(args.steps))
    tmp = Path(tempfile.mkdtemp(prefix="aw-efficientad-"))
    try:
        if args.penalty_dir:
            penalty, penalty_note = args.penalty_dir, f"penalty images: {args.penalty_dir}"
        else:
            n = bundled_penalty_dir(tmp / "penalty")
            if n == 0:
                print("No natural images for the penalty loss: pass --penalty-dir (an ImageNet-style folder).")
                return 2
            penalty, penalty_note = (
                str(tmp / "penalty"),
                f"penalty images: {n} natural photos bundled with scikit-image/scikit-learn/matplotlib",
            )
        if args.dataset == "demo":
            spec = datasets.demo(cfg)
        else:
            spec = datasets.mvtec(args.dataset.split(":", 1)[-1], cfg=cfg)
            datasets.check_available(spec, cfg)
        seed_everything(0, workers=True, verbose=False)
        params = models.resolve_params(
            "efficientad",
            {"model_size": args.model_size, "teacher": teacher, "max_steps": checkpoints[-1], "imagenet_dir": penalty},
        )
        module = models.create_model("efficientad", params, cfg)
        datamodule = datasets.build_datamodule(spec, train_batch_size=1, eval_batch_size=8)
        rows: list[dict] = []

        class Checkpoints(Callback):
            def __init__(self):
                self.train_s = 0.0
                self.t0 = None
                self.last = (0, 0.0)

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.train_s += time.perf_counter() - self.t0
                step = trainer.global_step
                if step in checkpoints:
                    m = evaluate_now(pl_module, trainer.datamodule)
                    rows.append(
                        {
                            "step": step,
                            "train s": self.train_s,
                            "s/step (since last)": (self.train_s - self.last[1]) / (step - self.last[0]),
                            "image AUROC": m["image_auroc"],
                            "pixel AUROC": m["pixel_auroc"],
                            "AUPRO": m["aupro"],
                            "image F1": m["image_f1"],
                            "teacher": teacher,
                        }
                    )
                    self.last = (step, self.train_s)
                    print(
                        f"  step {step}: {fmt(self.train_s)} s training, image AUROC {fmt(m['image_auroc'])}, "
                        f"pixel AUROC {fmt(m['pixel_auroc'])}",
                        flush=True,
                    )

        entry = models.get_entry("efficientad")
        engine = Engine(
            accelerator=args.accelerator,
            devices=1,
            logger=False,
            default_root_dir=tmp / "lightning",
            callbacks=[Checkpoints()],
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            **entry.trainer_kwargs(params),
        )
        t0 = time.perf_counter()
        engine.fit(model=module, datamodule=datamodule)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nEfficientAD-{args.model_size[0].upper()} on {spec.label} ({spec.path}), "
        f"{accelerator_label(args.accelerator, args.threads)}, torch {torch.__version__}; {penalty_note}; "
        f"load average {os.getloadavg()[0]:.2f}."
    )
    if teacher == "untrained":
        print(
            "TEACHER UNTRAINED (random): step times are real EfficientAD step times; the AUROC columns describe a "
            "random-feature student-teacher model, not published EfficientAD."
        )
    print(
        f"Whole fit call {wall:.1f} s (teacher statistics + training + evaluations); peak RSS {peak_rss_mb():.0f} MB.\n"
    )
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    from core.errors import WorkbenchError

    try:
        sys.exit(main())
    except WorkbenchError as exc:  # missing data or weights: say what to do, no traceback
        print(f"error: {exc}")
        sys.exit(2)
