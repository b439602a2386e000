"""What the Heatmap viewer's "Why flagged" section draws: explanation lines, version labels, the before/after table.

The logic is in ``core.engine.explain`` and ``core.engine.feedback``; this turns their results into text and tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.store.versions import Version


def version_label(version: Version, current: int) -> str:
    mark = " · current" if version.version == current else ""
    return f"v{version.version}{mark}: {version.change}" + (f" ({version.note})" if version.note else "")


def nearest_caption(why) -> str:
    """The closest normal patch in words: which training image, where, how far."""
    n = why.nearest
    x0, y0, x1, y1 = n.box
    return f"Closest normal patch: {Path(n.train_path).name}, box x {x0}–{x1}, y {y0}–{y1} · distance {n.distance:.3f}"


def why_text(why) -> str:
    if why.nearest is not None:
        return (
            f"This patch is **{why.nearest.distance:.3f}** away from everything normal the model has seen; the "
            f"closest normal patch (from **{Path(why.nearest.train_path).name}**) looks like this."
        )
    return "The hottest regions of the anomaly map, hottest first (this model has no memory bank of normal patches)."


def before_after_frame(comparison: dict) -> pd.DataFrame:
    """One row per version: confusion counts at the run's threshold, FPR at 100 % recall, image AUROC."""
    rows = []
    for row in comparison["rows"]:
        rows.append(
            {
                "version": f"v{row['version']}",
                "TP": row.get("tp"),
                "FP": row.get("fp"),
                "TN": row.get("tn"),
                "FN": row.get("fn"),
                "FPR @ 100 % recall": row["fpr_at_full_recall"],
                "image AUROC": row["image_auroc"],
            }
        )
    return pd.DataFrame(rows)


def lineage_frame(lineage: list[Version], current: int) -> pd.DataFrame:
    """A run's versions, oldest first: parent, what changed, who, when, note; the current one marked."""
    return pd.DataFrame(
        [
            {
                "version": f"v{v.version}" + (" · current" if v.version == current else ""),
                "parent": f"v{v.parent}" if v.parent else "–",
                "change": v.change,
                "who": v.who,
                "when": pd.to_datetime(v.when, unit="s") if v.when else None,
                "note": v.note or "",
            }
            for v in lineage
        ]
    )
