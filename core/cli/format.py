"""What every command group shares: plain text tables, value formatting, a progress bar, a run's summary, and
the parsing of ``--dataset`` and ``--param`` values."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from core import models
from core.data import datasets
from core.errors import WorkbenchError

RUN_ID_HELP = "the run's id (see `aw runs`)"


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain aligned text table (readable in any terminal, pasteable as markdown)."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(vals: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"

    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value and abs(value) < 0.001:
            return f"{value:.0e}"  # a learning rate, not 0.000
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def parse_dataset(text: str, max_train_images: int | None = None):
    """'demo' | 'mvtec:<category>' | 'folder:<imported name>'."""
    kind, _, name = text.partition(":")
    if kind == "demo":
        return datasets.demo()
    if kind == "mvtec":
        return datasets.mvtec(name, max_train_images=max_train_images)
    if kind in {"folder", "custom"}:
        return datasets.custom(name)
    raise WorkbenchError(f"Unknown dataset '{text}': use demo, mvtec:<category> or folder:<imported name>.")


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise WorkbenchError(f"Parameters are key=value, got '{pair}'.")
        params[key.strip()] = value.strip()
    return params


def run_row(run) -> dict:
    m, t, lat = run.metrics, run.timings, run.latency
    return {
        "id": run.id,
        "status": run.status,
        "model": run.model,
        "dataset": run.dataset.get("category"),
        "image AUROC": m.get("image_auroc"),
        "pixel AUROC": m.get("pixel_auroc"),
        "image F1": m.get("image_f1"),
        "AUPRO": m.get("aupro"),
        "fit s": t.get("fit_s"),
        "img/s": lat.get("images_per_s_b1"),
        "phase": run.phase if run.status == "running" else "",
    }


class Bar:
    """A tqdm bar per phase for foreground runs."""

    def __init__(self) -> None:
        self.bar, self.phase = None, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            if self.bar is not None:
                self.bar.close()
            self.phase = phase
            self.bar = tqdm(total=total or None, desc=phase, unit="it", leave=True, file=sys.stderr)
        if self.bar is not None and total:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def show_run(run) -> str:
    lines = [
        f"run {run.id}  [{run.status}]  {run.model} on {run.dataset.get('category')} (seed {run.seed})",
        f"params: {json.dumps(run.params)}",
    ]
    chosen = run.extra.get("chosen_for_data")
    if chosen:
        lines.append(f"image size chosen for the data: {chosen['why']}")
    lines += [f"WARNING: {w}" for w in models.model_warnings(run.model, run.params)]
    if run.error:
        lines.append(f"error: {run.error}")
    if run.status == "running":
        lines.append(f"phase: {run.phase} {run.progress:.0%}  {run.message}")
    m = run.metrics
    if m:
        keys = ["image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "aupro", "fpr_at_full_recall", "image_threshold"]
        lines.append(table([{k: m.get(k) for k in keys}]))
        per = m.get("per_defect") or {}
        if per:
            lines.append(table([{"defect type": k, **v} for k, v in per.items()]))
    t, lat = run.timings, run.latency
    if lat:
        lines.append(
            table(
                [
                    {
                        "fit s": t.get("fit_s"),
                        "test s": t.get("test_s"),
                        "e2e ms p50": lat.get("e2e_ms_p50"),
                        "e2e ms p95": lat.get("e2e_ms_p95"),
                        "model ms p50": lat.get("model_ms_p50"),
                        "img/s b1": lat.get("images_per_s_b1"),
                        "img/s best": lat.get("images_per_s_best"),
                        "best batch": lat.get("best_batch_size"),
                        "peak RSS MB": lat.get("peak_rss_mb"),
                        "threads": lat.get("threads"),
                    }
                ]
            )
        )
        lines.append(f"cpu: {lat.get('cpu')}")
    if run.retrieval:
        lines.append(f"retrieval: {json.dumps(run.retrieval)}")
    return "\n".join(lines)


def add_run_command(
    sub: argparse._SubParsersAction, name: str, func, helptext: str, run_id_help: str = RUN_ID_HELP
) -> argparse.ArgumentParser:
    """A command that acts on one run (``aw NAME RUN_ID``); its description is its help as a sentence."""
    p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
    p.add_argument("run_id", help=run_id_help)
    p.set_defaults(func=func)
    return p
