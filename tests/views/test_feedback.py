"""What the pages draw for feedback: version labels, the lineage table, the before/after table."""

from __future__ import annotations

from core.store.versions import Version
from core.views import feedback as fb_view

LINEAGE = [
    Version(1, None, "trained", "training", 1_765_000_000.0),
    Version(2, 1, "mark normal 018.png: +102 bank patches", "ana", 1_765_000_600.0, note="glare"),
]


def test_a_version_label_says_what_changed_and_marks_the_current_one():
    assert (
        fb_view.version_label(LINEAGE[1], current=2) == "v2 · current: mark normal 018.png: +102 bank patches (glare)"
    )
    assert fb_view.version_label(LINEAGE[0], current=2) == "v1: trained"


def test_the_lineage_table_lists_parent_change_who_and_note_oldest_first():
    frame = fb_view.lineage_frame(LINEAGE, current=2)
    assert list(frame["version"]) == ["v1", "v2 · current"]
    assert list(frame["parent"]) == ["–", "v1"] and list(frame["who"]) == ["training", "ana"]
    assert frame["note"].iloc[1] == "glare" and frame["when"].iloc[1].year == 2025


def test_the_before_after_table_has_one_row_per_version_with_counts_and_rates():
    comparison = {
        "rows": [
            {"version": 1, "tp": 5, "fp": 2, "tn": 8, "fn": 0, "fpr_at_full_recall": 0.2, "image_auroc": 0.95},
            {"version": 2, "tp": 5, "fp": 0, "tn": 10, "fn": 0, "fpr_at_full_recall": 0.0, "image_auroc": 1.0},
        ]
    }
    frame = fb_view.before_after_frame(comparison)
    assert list(frame["version"]) == ["v1", "v2"] and list(frame["FP"]) == [2, 0]
    assert list(frame["FPR @ 100 % recall"]) == [0.2, 0.0]
