"""Correcting false alarms without retraining: how much does feeding back the top k help, and how long does it take?

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/feedback.py --dataset demo --demo-train 4 --demo-test-good 40
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/feedback.py --dataset mvtec:grid --coreset 0.1

Trains a PatchCore run (EfficientNet-Lite0; or takes ``--run``), takes the false alarms at the zero-escape
operating point (threshold = the lowest defect score: every normal image at or above it), and for k in ``--ks``
feeds back the top k of them (highest score first) as "mark as normal", a chain of k versions starting each time
from the trained version v1 (core.engine.feedback.mark_normal). Then it scores the *untouched* test images (all
minus the top max(k) false alarms, the same images for every row) with v1 and with the k-th version and prints:
k, FPR at 100 % recall and image AUROC before/after, seconds per correction (mean and max, each including loading
the parent version, as the dashboard and CLI do), the bank size after, and the fed-back images' mean score before and
after with how many of them now score below the zero-escape threshold. Results also go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(dataset: str, coreset: float, image_size: int, demo_kwargs: dict) -> str:
    from core.data import datasets
    from core.jobs import queue as jobs
    from core.store.runs import RunRegistry

    kind, _, name = dataset.partition(":")
    spec = datasets.demo(**demo_kwargs) if kind == "demo" else datasets.mvtec(name)
    params = {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": coreset, "image_size": image_size}
    run = jobs.submit("patchcore", spec, params, start=False)
    t0 = time.perf_counter()
    status = jobs.execute_claimed(run.id, index=False)
    if status != "done":
        raise SystemExit(f"training failed: {RunRegistry().get(run.id).error}")
    print(f"trained run {run.id} on {dataset} in {time.perf_counter() - t0:.0f} s", flush=True)
    return run.id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--run", help="a finished PatchCore run (default: train one)")
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--demo-train", type=int, default=24, help="demo: training images (fewer: more false alarms)")
    ap.add_argument("--demo-test-good", type=int, default=8, help="demo: normal test images")
    args = ap.parse_args()
    os.environ.setdefault("AW_THREADS", str(args.threads))

    from core.config import settings
    from core.engine import evaluation, feedback
    from core.runtime import set_threads
    from core.store.artifacts import RunArtifacts
    from core.store.runs import RunRegistry
    from core.store.versions import RunVersions

    set_threads(args.threads)
    run_id = args.run or train(
        args.dataset, args.coreset, args.image_size, {"n_train": args.demo_train, "n_test_good": args.demo_test_good}
    )
    run_dir = settings().run_dir(run_id)
    run = RunRegistry().get(run_id)
    records = RunArtifacts(run_dir).records
    labels = records["label"].to_numpy(int)
    threshold = evaluation.zero_escape_threshold(records["score"], labels)
    alarms = records[(records.label == 0) & (records.score >= threshold)].sort_values("score", ascending=False)
    print(
        f"run {run_id}: {len(records)} test images, {int((labels == 0).sum())} normal; zero-escape threshold "
        f"{threshold:.4f}: {len(alarms)} false alarms; bank {run.extra.get('coreset', {}).get('bank_size')}",
        flush=True,
    )
    ks = [k for k in args.ks if k <= len(alarms)]
    if not ks:
        raise SystemExit("no false alarms at the zero-escape threshold: nothing to feed back")
    untouched = records[~records["path"].isin(set(alarms["path"].iloc[: max(ks)]))]
    paths, y, types = list(untouched["path"]), untouched["label"].to_numpy(int), list(untouched["defect_type"])

    def metrics(version: int) -> dict:
        return evaluation.image_metrics(feedback.version_scores(run_dir, version, paths), y, types)

    before = metrics(1)
    store = RunVersions(run_dir)
    rows = []
    for k in ks:
        store.set_current(1, who="benchmark")
        seconds, result = [], None
        for path in alarms["path"].iloc[:k]:
            result = feedback.mark_normal(run_dir, path, note=f"benchmark top {k}", who="benchmark")
            seconds.append(result.seconds)
        after = metrics(result.version.version)
        fed = list(alarms["path"].iloc[:k])
        fed_after = feedback.version_scores(run_dir, result.version.version, fed)
        rows.append(
            {
                "k": k,
                "version": result.version.version,
                "fpr_full_recall_before": before["fpr_at_full_recall"],
                "fpr_full_recall_after": after["fpr_at_full_recall"],
                "auroc_before": before["image_auroc"],
                "auroc_after": after["image_auroc"],
                "s_per_correction_mean": sum(seconds) / len(seconds),
                "s_per_correction_max": max(seconds),
                "bank_size": result.bank_size,
                "fed_below_threshold": int((fed_after < threshold).sum()),
                "fed_score_before_mean": float(alarms["score"].iloc[:k].mean()),
                "fed_score_after_mean": float(fed_after.mean()),
                "added": result.bank_size - (run.extra.get("coreset", {}).get("bank_size") or 0),
            }
        )
    store.set_current(1, who="benchmark")  # leave the run as trained
    print(
        f"\n{args.dataset}: untouched test images = {len(paths)} ({int((y == 0).sum())} normal, {int(y.sum())} "
        f"defective), {args.threads} threads\n"
    )
    print(
        "| k | FPR@100%R before | after | image AUROC before | after | s/correction mean (max) | bank size "
        "| fed-back images: score before → after, below threshold |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['k']} | {r['fpr_full_recall_before']:.3f} | {r['fpr_full_recall_after']:.3f} | "
            f"{r['auroc_before']:.4f} | {r['auroc_after']:.4f} | {r['s_per_correction_mean']:.2f} "
            f"({r['s_per_correction_max']:.2f}) | {r['bank_size']:,} (+{r['added']}) | "
            f"{r['fed_score_before_mean']:.2f} → {r['fed_score_after_mean']:.2f}, {r['fed_below_threshold']}/{r['k']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"run": run_id, "dataset": args.dataset, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
