"""anomalib models built on an ImageNet CNN backbone: PaDiM, DFM (no gradient training), STFPM, FastFlow and FRE
(trained for a number of epochs on features of a frozen backbone).

Not here: SuperSimpleNet. Its synthetic anomalies are Gaussian noise of a fixed std (0.015) tuned to torchvision's
WRN-50 features; EfficientNet-Lite0's features are ~5 in std, so the noise is invisible to the model and it does
not learn (image AUROC 0.54 on the synthetic demo where every model here reaches >= 0.9). It needs anomalib's WRN-50
weights, which can't be had offline, so it could not be tested here. Nor CFlow: anomalib's CFlow divides each
likelihood by the maximum over the *batch*, so an image's score depends on the images scored with it; scored alone
(an upload, or Engine.predict's batches of one) every image is normalised by its own peak and image-level ranking
collapses (image AUROC 0.67 on the synthetic demo, 1.0 when the whole test set is one batch).

Each takes its features from backbone *stages* (``weights.Backbone``), so one entry serves anomalib's default
backbone online (ResNet-18, ResNet-50, WRN-50) and EfficientNet-Lite0, whose weights ship with the product,
offline. Published numbers are for anomalib's backbones at their full training schedules; what these defaults
reach on 2 CPU cores is in the README's model table (``benchmarks/mvtec_benchmark.py --models``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from core.config import Settings
from core.errors import WeightsError
from core.models import weights
from core.models.registry import (
    Cost,
    Hooks,
    ModelEntry,
    Param,
    backbone_argument,
    backbone_param,
    image_size_param,
    register,
    resize_normalize,
    stage_layers,
)


# Models that train with gradients: no validation pass (its statistics come from the run's own test pass, see
# core.engine.inference.calibrate_post_processor), a fixed number of epochs.
def _epochs_trainer(p: dict) -> dict:
    return {"max_epochs": p["max_epochs"], "limit_val_batches": 0, "num_sanity_val_steps": 0}


def _one_pass_trainer(p: dict) -> dict:
    return {"max_epochs": 1, "limit_val_batches": 0, "num_sanity_val_steps": 0}


def _builder(
    cls_name: str,
    kwargs: Callable[[dict, str], dict],
    takes_pre_trained: bool = True,
    cls_override: Callable[[dict], type] | None = None,
):
    """``build`` for an anomalib class whose constructor takes ``backbone`` (plus ``kwargs(params, backbone)``).

    Models without a ``pre_trained`` switch (STFPM's teacher) load the backbone's weights even
    when a run's checkpoint will overwrite them, so they always get the resolved weights."""

    def build(p: dict, cfg: Settings, hooks: Hooks, pre_trained: bool):
        cls = cls_override(p) if cls_override else getattr(importlib.import_module("anomalib.models"), cls_name)
        backbone = weights.get_backbone(p["backbone"])
        arg = backbone_argument(p, cfg, pre_trained or not takes_pre_trained)
        extra = {"pre_trained": pre_trained} if takes_pre_trained else {}
        try:
            return cls(
                **kwargs(p, arg),
                **extra,
                pre_processor=resize_normalize(p["image_size"], backbone.mean, backbone.std),
                evaluator=False,
                visualizer=False,
            )
        except (RuntimeError, OSError) as exc:  # timm raises these for missing/unreachable weights
            raise WeightsError(f"Could not load backbone '{backbone.name}': {exc}") from exc

    return build


def _stock(kwargs: Callable[[dict, str], dict], takes_pre_trained: bool = True):
    return lambda p, backbone: {**kwargs(p, backbone), **({"pre_trained": False} if takes_pre_trained else {})}


def _epochs_param(default: int, per_epoch_note: str) -> Param:
    return Param(
        "max_epochs", default, f"Training epochs over the normal images. {per_epoch_note}", "int", min=1, max=1000
    )


BATCH_PARAM = Param(
    "batch_size",
    16,
    "Training images per optimisation step (smaller: more steps per epoch and "
    "less memory; a few dozen images need a small batch to learn at all).",
    "int",
    min=1,
    max=256,
)


def _space(name: str) -> Callable[[dict], str]:
    return lambda p: f"{name}-{p['backbone']}"


# ---- PaDiM (Defard et al., 2021) ------------------------------------------------------------------------

PADIM_STAGES = (1, 2, 3)
# anomalib's own choices for its backbones; other backbones keep at most this many random channels
_PADIM_FEATURES = {"resnet18": 100, "wide_resnet50_2": 550}


def padim_features(p: dict) -> int:
    if p["n_features"]:
        return p["n_features"]
    backbone = weights.get_backbone(p["backbone"])
    channels, _ = backbone.feature_dims(list(backbone.stage_layers(PADIM_STAGES)))
    return _PADIM_FEATURES.get(backbone.name, min(100, channels or 100))


def _padim_kwargs(p: dict, backbone: str) -> dict:
    return dict(backbone=backbone, layers=stage_layers(p, PADIM_STAGES), n_features=padim_features(p))


register(
    ModelEntry(
        name="padim",
        label="PaDiM",
        anomalib_class="Padim",
        description="A Gaussian per patch position over pretrained features of the normal images; no training.",
        backbone_stages=PADIM_STAGES,
        anomalib_backbone="resnet18",
        params=(
            backbone_param("resnet18"),
            Param(
                "n_features",
                0,
                "Random feature channels kept (0 = anomalib's choice: 100 for ResNet-18, 550 for "
                "WRN-50, at most 100 otherwise). More = better and slower, with memory growing as their square.",
                "int",
                min=0,
                max=2000,
            ),
            image_size_param(),
        ),
        build=_builder("Padim", _padim_kwargs),
        stock_kwargs=_stock(_padim_kwargs),
        trainer_kwargs=_one_pass_trainer,
        train_batch_size=16,
        fit_phase="feature extraction",
        embedding_space=_space("padim"),
        cost=Cost(train_s=0.085, score_s=0.16, fit_mb=1.6, fixed_mb=600),
        feature_submodule="feature_extractor",
        channels_last=True,  # oneDNN's NHWC convolutions: backbone 29 -> 24 ms per 256² image (benchmarks/floor.py)
    )
)


# ---- DFM (Ahuja et al., 2019) ---------------------------------------------------------------------------

DFM_STAGES = (3,)


def _dfm_kwargs(p: dict, backbone: str) -> dict:
    return dict(
        backbone=backbone,
        layer=stage_layers(p, DFM_STAGES)[0],
        pooling_kernel_size=p["pooling_kernel_size"],
        pca_level=p["pca_level"],
        score_type="fre",
    )


register(
    ModelEntry(
        name="dfm",
        label="DFM",
        anomalib_class="Dfm",
        description="PCA of pooled pretrained features; the anomaly map is the feature reconstruction error. "
        "No training.",
        backbone_stages=DFM_STAGES,
        anomalib_backbone="resnet50",
        params=(
            backbone_param("resnet50"),
            Param("pooling_kernel_size", 4, "Average pooling of the feature map before PCA.", "int", min=1, max=16),
            Param("pca_level", 0.97, "Share of the feature variance the PCA keeps.", "float", min=0.5, max=0.9999),
            image_size_param(),
        ),
        build=_builder("Dfm", _dfm_kwargs),
        export_note="anomalib's export of DFM comes out fixed to the batch size it was traced with (its features are "
        ".view()ed by shape), so it is not offered; the PyTorch path serves every batch size.",
        stock_kwargs=_stock(_dfm_kwargs),
        trainer_kwargs=_one_pass_trainer,
        train_batch_size=16,
        fit_phase="feature extraction",
        embedding_space=_space("dfm"),
        cost=Cost(train_s=0.065, score_s=0.065, fit_mb=0.05, fixed_mb=200),
        feature_submodule="feature_extractor",
    )
)


# ---- STFPM (Wang et al., 2021) --------------------------------------------------------------------------

STFPM_STAGES = (1, 2, 3)


def _stfpm_kwargs(p: dict, backbone: str) -> dict:
    return dict(backbone=backbone, layers=stage_layers(p, STFPM_STAGES))


register(
    ModelEntry(
        name="stfpm",
        label="STFPM",
        anomalib_class="Stfpm",
        description="A student network learns to copy a pretrained teacher's features on normal images; where it "
        "fails to, there is a defect.",
        backbone_stages=STFPM_STAGES,
        anomalib_backbone="resnet18",
        params=(
            backbone_param("resnet18", "Teacher (pretrained) and student (trained from scratch) network."),
            BATCH_PARAM,
            _epochs_param(
                12,
                "anomalib's example config trains up to 100, stopping early when pixel AUROC stops "
                "rising (patience 5); the launch form shows what the chosen number costs here.",
            ),
            image_size_param(),
        ),
        build=_builder("Stfpm", _stfpm_kwargs, takes_pre_trained=False),
        stock_kwargs=_stock(_stfpm_kwargs, takes_pre_trained=False),
        trainer_kwargs=_epochs_trainer,
        train_batch_size=16,
        embedding_space=_space("stfpm"),
        cost=Cost(train_s=0.2, score_s=0.075, fixed_mb=1950),
        feature_submodule="teacher_model",
    )
)


# ---- FastFlow (Yu et al., 2021) -------------------------------------------------------------------------

FASTFLOW_STAGES = (1, 2, 3)


def _fastflow_class(p: dict) -> type:
    """anomalib's Fastflow for the backbones it names (ResNet-18, WRN-50); for any other timm CNN the same model
    over that CNN's stride 4/8/16 stages: anomalib's torch model and flows, only the feature extractor is chosen
    by stage instead of by name."""
    # timm/anomalib: not when the registry loads (page start-up)
    import timm
    from anomalib.models import Fastflow

    if p["backbone"] in ("resnet18", "wide_resnet50_2"):
        return Fastflow
    # anomalib/torch: as above, not at page start-up
    from anomalib.models.components import AnomalibModule
    from anomalib.models.image.fastflow.anomaly_map import AnomalyMapGenerator
    from anomalib.models.image.fastflow.loss import FastflowLoss
    from anomalib.models.image.fastflow.torch_model import FastflowModel, create_fast_flow_block
    from torch import nn

    class CnnFastflowModel(FastflowModel):
        def __init__(
            self, input_size, backbone: str, pre_trained: bool, flow_steps: int, conv3x3_only: bool, hidden_ratio: float
        ) -> None:
            nn.Module.__init__(self)
            self.input_size = input_size
            # timm's feature indices 1, 2, 3 are the stride-4, 8 and 16 stages of any CNN (ResNet: layer1..3)
            self.feature_extractor = timm.create_model(
                backbone, pretrained=pre_trained, features_only=True, out_indices=[1, 2, 3]
            )
            channels = self.feature_extractor.feature_info.channels()
            scales = self.feature_extractor.feature_info.reduction()
            self.norms = nn.ModuleList(
                nn.LayerNorm([c, int(input_size[0] / s), int(input_size[1] / s)], elementwise_affine=True)
                for c, s in zip(channels, scales, strict=True)
            )
            for parameter in self.feature_extractor.parameters():
                parameter.requires_grad = False
            self.fast_flow_blocks = nn.ModuleList(
                create_fast_flow_block(
                    [c, int(input_size[0] / s), int(input_size[1] / s)],
                    conv3x3_only=conv3x3_only,
                    hidden_ratio=hidden_ratio,
                    flow_steps=flow_steps,
                )
                for c, s in zip(channels, scales, strict=True)
            )
            self.anomaly_map_generator = AnomalyMapGenerator(input_size=input_size)

    class CnnFastflow(Fastflow):
        def __init__(
            self,
            backbone: str,
            pre_trained: bool = True,
            flow_steps: int = 8,
            conv3x3_only: bool = False,
            hidden_ratio: float = 1.0,
            **processors,
        ) -> None:
            AnomalibModule.__init__(self, **processors)
            self.backbone, self.pre_trained, self.flow_steps = backbone, pre_trained, flow_steps
            self.conv3x3_only, self.hidden_ratio = conv3x3_only, hidden_ratio
            self.model = CnnFastflowModel(
                self.input_size, backbone, pre_trained, flow_steps, conv3x3_only, hidden_ratio
            )
            self.loss = FastflowLoss()

    return CnnFastflow


def _fastflow_kwargs(p: dict, backbone: str) -> dict:
    return dict(backbone=backbone, flow_steps=p["flow_steps"], hidden_ratio=p["hidden_ratio"])


register(
    ModelEntry(
        name="fastflow",
        label="FastFlow",
        anomalib_class="Fastflow",
        description="2-D normalizing flows map each stage's pretrained features to a Gaussian; "
        "low likelihood = defect.",
        backbone_stages=FASTFLOW_STAGES,
        anomalib_backbone="resnet18",
        params=(
            backbone_param("resnet18"),
            BATCH_PARAM,
            _epochs_param(
                8,
                "anomalib's FastFlow config trains up to 500, stopping early when pixel AUROC stops rising "
                "(patience 3); the launch form shows what the chosen number costs here.",
            ),
            Param("flow_steps", 8, "Flow steps per stage.", "int", min=1, max=20),
            Param(
                "hidden_ratio",
                1.0,
                "Width of the flows' sub-networks relative to the features.",
                "float",
                min=0.1,
                max=4.0,
            ),
            image_size_param(),
        ),
        build=_builder("Fastflow", _fastflow_kwargs, cls_override=_fastflow_class),
        model_class=_fastflow_class,
        stock_kwargs=_stock(_fastflow_kwargs),
        trainer_kwargs=_epochs_trainer,
        train_batch_size=16,
        embedding_space=_space("fastflow"),
        cost=Cost(train_s=0.1, score_s=0.08, fixed_mb=600),
        feature_submodule="feature_extractor",
        channels_last=True,  # backbone and flows' convolutions in NHWC: 33 -> 26 ms for the backbone alone
    )
)


# ---- FRE (Ndiour et al., 2020) --------------------------------------------------------------------------

FRE_STAGES = (3,)


def fre_input_dim(p: dict) -> int:
    """Length of one image's pooled stage-3 feature vector, which the autoencoder reconstructs (anomalib's default
    65,536 is ResNet-50 layer3 at 256 px, pooled 2)."""
    backbone = weights.get_backbone(p["backbone"])
    channels, stride = backbone.feature_dims(stage_layers(p, FRE_STAGES))
    side = p["image_size"] // stride // p["pooling_kernel_size"]
    return channels * side * side


def _fre_kwargs(p: dict, backbone: str) -> dict:
    return dict(
        backbone=backbone,
        layer=stage_layers(p, FRE_STAGES)[0],
        pooling_kernel_size=p["pooling_kernel_size"],
        input_dim=fre_input_dim(p),
        latent_dim=p["latent_dim"],
    )


register(
    ModelEntry(
        name="fre",
        label="FRE",
        anomalib_class="Fre",
        description="A linear autoencoder learns to reconstruct pooled pretrained features of normal images; the "
        "reconstruction error is the anomaly map.",
        backbone_stages=FRE_STAGES,
        anomalib_backbone="resnet50",
        params=(
            backbone_param("resnet50"),
            BATCH_PARAM,
            _epochs_param(
                40,
                "anomalib publishes no schedule for FRE; each epoch extracts the backbone features "
                "again, so the time grows with epochs x images (shown on the launch form).",
            ),
            Param(
                "pooling_kernel_size",
                2,
                "Average pooling of the feature map before the autoencoder.",
                "int",
                min=1,
                max=8,
            ),
            Param("latent_dim", 220, "Size of the autoencoder's bottleneck.", "int", min=8, max=4096),
            image_size_param(),
        ),
        build=_builder("Fre", _fre_kwargs),
        export_note="anomalib's export of FRE comes out fixed to the batch size it was traced with (its pooled "
        "features "
        "are reshaped by shape), so it is not offered; the PyTorch path serves every batch size.",
        stock_kwargs=_stock(_fre_kwargs),
        trainer_kwargs=_epochs_trainer,
        train_batch_size=16,
        embedding_space=_space("fre"),
        cost=Cost(train_s=0.055, score_s=0.057, fixed_mb=300),
        feature_submodule="",
        patch_features=lambda model, batch: model.feature_extractor(batch)[model.layer],
    )
)
