#!/usr/bin/env bash
# The product on an NVIDIA GPU. Training goes through anomalib's Engine with accelerator="auto", so where a
# GPU is visible the fit runs on CUDA while scoring, export and the dashboard stay on the CPU path. This trains
# both models on the demo data through the CLI (as a user would) and times EfficientAD steps on the GPU.
#     bash benchmarks/gpu_check.sh            (PYTHON=... to pick the interpreter; AW_ARTIFACTS to keep runs)
set -u
PY=${PYTHON:-python3}
export AW_ARTIFACTS=${AW_ARTIFACTS:-$(mktemp -d)/artifacts} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
$PY -c "import torch; print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available(),
      '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU: everything below runs on the CPU')"
echo "== PatchCore, demo data, coreset 10 %"
$PY -m core train --model patchcore --dataset demo --param coreset_sampling_ratio=0.1 || echo "PATCHCORE FAILED"
PHOTOS="$AW_ARTIFACTS/penalty_photos"
$PY -c "import sys; from pathlib import Path; sys.path.insert(0, '.'); from benchmarks.efficientad_steps import bundled_penalty_dir as b; print(b(Path('$PHOTOS')), 'penalty photos')"
echo "== EfficientAD-S (untrained teacher: pipeline and timing only), demo data, 300 steps"
$PY -m core train --model efficientad --dataset demo --param teacher=untrained --param max_steps=300 \
    --param imagenet_dir="$PHOTOS" || echo "EFFICIENTAD FAILED"
$PY -m core runs
echo "== EfficientAD-S steps on the GPU"
$PY benchmarks/efficientad_steps.py --accelerator gpu --teacher untrained --steps 100 500 1000 2000 --penalty-dir "$PHOTOS" 2>&1 \
    | grep -v -E "Calculate|self.log|batch_size"
