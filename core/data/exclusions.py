"""Training images taken out of a dataset, recorded beside it: reversible, and the user's files are never touched.

A training-set audit (``core.engine.audit``) finds 'good' images that look anomalous; the engineer excludes the
ones that really are defective. The exclusion is a record, not a deletion: ``artifacts/audits/<dataset key>/
exclusions.json`` lists the excluded file names (relative to ``train/good``) with the reason and time, plus a
history of every exclude and include. ``core.data.datasets`` reads it when it makes a spec (``datasets.demo()``,
``custom(name)``, ``mvtec(cat)``), so the spec — and every run queued from it — carries the exclusions it was
trained with (``DatasetSpec.excluded``), and ``train_images(spec)`` leaves those files out.

The record lives under the artifacts folder rather than inside the dataset folder because MVTec AD usually sits on a
shared, read-only disk; the audit's scores and maps live in the same folder.

    from core.data import datasets, exclusions
    spec = datasets.demo()
    exclusions.exclude_images(spec, ["003.png"], reason="scratch visible at top left")
    len(datasets.train_images(datasets.demo()))   # one fewer
    exclusions.include_images(spec, ["003.png"])  # and back
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.errors import DatasetError


def dataset_key(spec: Any) -> str:
    """A folder name for a dataset: kind and category, plus a short hash of its root for MVTec AD (two MVTec roots
    may hold the same category; demo and imported datasets live in one place each)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{spec.kind}-{spec.category}")
    if spec.kind == "mvtec":
        name += "-" + hashlib.sha1(str(Path(spec.root).resolve()).encode()).hexdigest()[:8]
    return name


def trust_dir(spec: Any, cfg: Settings | None = None) -> Path:
    """Where a dataset's audit and exclusions are kept (not created here)."""
    return (cfg or current_settings()).artifacts / "audits" / dataset_key(spec)


def exclusions_path(spec: Any, cfg: Settings | None = None) -> Path:
    return trust_dir(spec, cfg) / "exclusions.json"


def _read(spec: Any, cfg: Settings | None) -> dict:
    path = exclusions_path(spec, cfg)
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        raise DatasetError(
            f"The exclusions record {path} is damaged; fix or delete it (your images are unchanged)."
        ) from None
    return {"excluded": dict(data.get("excluded") or {}), "history": list(data.get("history") or [])}


def _write(spec: Any, cfg: Settings | None, data: dict) -> None:
    path = exclusions_path(spec, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # atomic: a run being queued never reads half a record


def read_exclusions(spec: Any, cfg: Settings | None = None) -> dict[str, dict]:
    """{file name in train/good: {"reason", "at"}} of the images excluded now."""
    return _read(spec, cfg)["excluded"]


def excluded_names(spec: Any, cfg: Settings | None = None) -> tuple[str, ...]:
    return tuple(sorted(read_exclusions(spec, cfg)))


def history(spec: Any, cfg: Settings | None = None) -> list[dict]:
    """Every exclude and include, oldest first: {"action", "names", "reason", "at"}."""
    return _read(spec, cfg)["history"]


def _names(spec: Any, paths: list[str | Path]) -> list[str]:
    """File names in train/good for ``paths`` (names or full paths); an unknown one is an error naming the set."""
    folder = Path(spec.path) / "train" / "good"
    known = {p.name for p in images.list_images(folder)} if folder.is_dir() else set()
    out = []
    for p in paths:
        name = Path(p).name
        if name not in known:
            raise DatasetError(
                f"'{p}' is not a training image of {spec.kind}:{spec.category} (expected a file in {folder})."
            )
        out.append(name)
    return list(dict.fromkeys(out))


def exclude_images(
    spec: Any, paths: list[str | Path], reason: str = "", cfg: Settings | None = None
) -> tuple[str, ...]:
    """Leave these training images out of future runs on ``spec``'s dataset; returns all names excluded now."""
    names = _names(spec, paths)
    data = _read(spec, cfg)
    now = time.time()
    for name in names:
        data["excluded"][name] = {"reason": reason, "at": now}
    data["history"].append({"action": "exclude", "names": names, "reason": reason, "at": now})
    _write(spec, cfg, data)
    return tuple(sorted(data["excluded"]))


def include_images(spec: Any, paths: list[str | Path], cfg: Settings | None = None) -> tuple[str, ...]:
    """Undo ``exclude_images`` for these images; returns all names still excluded."""
    names = [Path(p).name for p in paths]
    data = _read(spec, cfg)
    unknown = [n for n in names if n not in data["excluded"]]
    if unknown:
        raise DatasetError(f"Not excluded, so nothing to include again: {', '.join(unknown)}.")
    for name in names:
        data["excluded"].pop(name)
    data["history"].append({"action": "include", "names": names, "reason": "", "at": time.time()})
    _write(spec, cfg, data)
    return tuple(sorted(data["excluded"]))
