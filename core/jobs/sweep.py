"""A parameter sweep: one run per point of a grid of a model's registry parameters, queued and kept as a group.

The question it answers is an engineer's "is 512 px worth it on my line?": pick a model, a dataset and a few values
for any of its parameters (k, coreset ratio, bank cap, backbone, layers, image size, epochs…); ``plan`` shows every
point with its estimate and the grid's total before anything runs; ``launch`` queues the points (the local worker,
or the Ray cluster when one is configured: the queue does not care) and tags each run with the sweep's id, so the
Compare page and ``aw sweep show`` read them back as one group (``core.views.sweep``).

Example::

    p = plan("patchcore", spec, {"image_size": ["256", "512"], "coreset_sampling_ratio": ["0.01", "0.1"]})
    print(p.total_seconds)          # the whole grid, estimated on this machine
    runs = launch(p)                # four queued runs, run.extra["sweep"]["id"] == runs[0].extra["sweep"]["id"]
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass

from core import models
from core.config import Settings
from core.config import settings as current_settings
from core.data.datasets import DatasetSpec
from core.engine.estimate import estimate_run
from core.errors import WorkbenchError
from core.jobs import launch as launching
from core.store.runs import Run, RunRegistry

MAX_POINTS = 64  # a grid beyond this is a typo more often than a plan (and hours on a workstation)


@dataclass(frozen=True)
class SweepPlan:
    model: str
    spec: DatasetSpec
    grid: dict[str, list]  # parameter -> its values, validated and typed, in the user's order
    points: list[dict]  # the full parameters of each run (defaults filled), one per grid point
    estimates: list  # core.models.cost.Estimate per point, or None where the model cannot be estimated

    @property
    def total_seconds(self) -> float | None:
        if any(e is None for e in self.estimates):
            return None
        return float(sum(e.seconds for e in self.estimates))


def parse_assignments(lines: list[str]) -> dict[str, str]:
    """``["image_size=256,512", …]`` (CLI ``--values``, the Training page's text box) → {name: "256,512"}."""
    values = {}
    for line in (raw.strip() for raw in lines):
        if not line:
            continue
        name, sep, rest = line.partition("=")
        if not sep or not name.strip():
            raise WorkbenchError(f"'{line}': give a parameter and its values as name=v1,v2 (e.g. image_size=256,512).")
        values[name.strip()] = rest.strip()
    return values


def parse_grid(model: str, values: dict[str, list[str] | str]) -> dict[str, list]:
    """``{"image_size": "256,512"}`` or lists of strings → typed, validated values per parameter. Each value is
    checked the way a single run's parameter is (types, ranges, choices), so a bad one is refused before any run."""
    entry = models.get_entry(model)
    known = {p.name for p in entry.params}
    grid: dict[str, list] = {}
    for name, raw in values.items():
        if name not in known:
            raise WorkbenchError(
                f"{entry.label} has no parameter '{name}'. Its parameters: {', '.join(sorted(known))}."
            )
        items = [v.strip() for v in (raw.split(",") if isinstance(raw, str) else raw) if str(v).strip()]
        if not items:
            raise WorkbenchError(f"No values given for '{name}'.")
        typed = [models.resolve_params(model, {name: v})[name] for v in items]
        grid[name] = list(dict.fromkeys(typed))  # a value given twice is one point
    if not grid:
        raise WorkbenchError("A sweep needs at least one parameter with values, e.g. image_size=256,512.")
    return grid


def plan(model: str, spec: DatasetSpec, values: dict[str, list[str] | str], base: dict | None = None) -> SweepPlan:
    """Every point of the grid (the product of the values) with ``base`` parameters under it, and its estimate."""
    grid = parse_grid(model, values)
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    if len(combos) > MAX_POINTS:
        raise WorkbenchError(f"{len(combos)} points is more than a sweep takes ({MAX_POINTS}); give fewer values.")
    points = [models.resolve_params(model, {**(base or {}), **dict(zip(names, c, strict=True))}) for c in combos]
    return SweepPlan(model, spec, grid, points, [estimate_run(model, p, spec) for p in points])


def launch(p: SweepPlan, seed: int = 0, cfg: Settings | None = None) -> list[Run]:
    """Queue one run per point, tagged with one sweep id, then start the worker once."""
    cfg = cfg or current_settings()
    registry = RunRegistry(cfg)
    sweep_id = time.strftime("sweep-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    tag = {"id": sweep_id, "swept": list(p.grid), "points": len(p.points)}
    runs = []
    for params in p.points:
        run = launching.queue(p.model, p.spec, params, seed, cfg)
        registry.merge_extra(run.id, sweep=tag)
        runs.append(registry.get(run.id))
    launching.start_worker(cfg)
    return runs


def sweep_runs(sweep_id: str, cfg: Settings | None = None) -> list[Run]:
    """The runs of one sweep, oldest first."""
    runs = [
        r for r in RunRegistry(cfg or current_settings()).list() if (r.extra.get("sweep") or {}).get("id") == sweep_id
    ]
    if not runs:
        raise WorkbenchError(f"No sweep '{sweep_id}'. `aw sweep list` shows the sweeps there are.")
    return sorted(runs, key=lambda r: r.id)


def sweeps(cfg: Settings | None = None) -> list[dict]:
    """One line per sweep, newest first: id, model, dataset, swept parameters, points, runs finished."""
    groups: dict[str, list[Run]] = {}
    for run in RunRegistry(cfg or current_settings()).list():
        tag = run.extra.get("sweep")
        if tag:
            groups.setdefault(tag["id"], []).append(run)
    out = []
    for sweep_id, runs in groups.items():
        first = runs[0]
        out.append(
            {
                "id": sweep_id,
                "model": first.model,
                "dataset": DatasetSpec.from_dict(first.dataset).label,
                "swept": ", ".join(first.extra["sweep"]["swept"]),
                "points": first.extra["sweep"]["points"],
                "done": sum(r.status == "done" for r in runs),
            }
        )
    return sorted(out, key=lambda s: s["id"], reverse=True)
