"""On real MVTec AD grid (only where ../shared holds it): PatchCore with EfficientNet-Lite0 really works."""

from __future__ import annotations

from core import datasets, jobs
from core.runs import DONE, RunRegistry
from tests.conftest import SHARED, needs_shared_grid


@needs_shared_grid
def test_patchcore_on_real_grid_reaches_the_published_ballpark(artifacts):
    spec = datasets.mvtec("grid", root=SHARED / "datasets" / "mvtec_ad")
    run = jobs.submit("patchcore", spec, {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": 0.01},
                      start=False)
    assert jobs.execute_claimed(run.id, index=False) == DONE, RunRegistry().get(run.id).error
    m = RunRegistry().get(run.id).metrics
    print({k: m[k] for k in ("image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "aupro")})
    assert m["image_auroc"] >= 0.95
    assert m["pixel_auroc"] >= 0.95
    assert m["n_anomalous"] == 57 and m["n_normal"] == 21
