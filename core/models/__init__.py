"""Model registry: a name → an anomalib model with documented, validated parameters (see ``registry``).

One module per model family registers its entries: ``patchcore``, ``efficientad``, ``feature_models`` (PaDiM,
DFM, STFPM, FastFlow, FRE). ``weights`` finds backbone and teacher weights (bundled, local, hub); ``coreset`` is
PatchCore's fast k-center greedy; ``cost`` holds the estimate types every entry's cost hook returns.

Layer 4 of core: imports ``core.data``, ``core.store`` and the ground floor only.
"""

from core.models import efficientad, feature_models, patchcore  # noqa: E402,F401  (each registers its entries)
from core.models.efficientad import UNTRAINED_TEACHER_WARNING  # noqa: E402
from core.models.patchcore import MAX_BANK_SIZE, patchcore_layers  # noqa: E402
from core.models.registry import (
    REGISTRY,
    Cost,
    Hooks,
    ModelEntry,
    Param,
    backbone_users,
    create_model,
    data_choice,
    default_params,
    get_entry,
    model_warnings,
    register,
    resolve_for_data,
    resolve_params,
    runnable_models,
    stock_module,
    unavailable_reason,
    weights_overview,
)

__all__ = [
    "REGISTRY",
    "Cost",
    "Hooks",
    "ModelEntry",
    "Param",
    "backbone_users",
    "create_model",
    "data_choice",
    "default_params",
    "get_entry",
    "model_warnings",
    "register",
    "resolve_for_data",
    "resolve_params",
    "runnable_models",
    "stock_module",
    "unavailable_reason",
    "weights_overview",
    "MAX_BANK_SIZE",
    "patchcore_layers",
    "UNTRAINED_TEACHER_WARNING",
]
