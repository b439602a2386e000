"""On real MVTec AD grid (only where ../shared holds it): PatchCore with EfficientNet-Lite0 really works."""

from __future__ import annotations

import pytest

from core.store.runs import DONE


@pytest.mark.real_data("grid")
def test_patchcore_on_real_grid_reaches_the_published_ballpark(grid_run):
    run, status = grid_run
    assert status == DONE, run.error
    m = run.metrics
    print({k: m[k] for k in ("image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "aupro", "fpr_at_full_recall")})
    print({k: run.timings.get(k) for k in ("fit_s", "test_s", "peak_rss_fit_mb")})
    assert m["image_auroc"] >= 0.95
    assert m["pixel_auroc"] >= 0.95
    assert m["n_anomalous"] == 57 and m["n_normal"] == 21
    assert m["per_defect"].keys() == {"bent", "broken", "glue", "metal_contamination", "thread"}
