"""Where things live and whether the machine is online.

All paths come from environment variables with sensible defaults, so the CLI, the worker processes and
the pages agree without passing settings around. ``settings()`` is cheap; call it where needed.

| variable | default | meaning |
|---|---|---|
| AW_ARTIFACTS | <project>/artifacts | run registry, run outputs, imported data and weights, vector store |
| AW_SHARED | ../shared if present | a read-only folder of real data and weights (``none``: never look for one) |
| AW_MVTEC_ROOT | <shared>/datasets/mvtec_ad if present, else <artifacts>/datasets/mvtec_ad | MVTec AD root |
| AW_WEIGHTS_DIR | <artifacts>/weights | imported backbone weights (``aw weights import``) |
| AW_EXTRA_WEIGHTS_DIRS | <shared>/weights if present | more read-only folders searched for weights (``:``-separated) |
| AW_OFFLINE | 1 if HF_HUB_OFFLINE=1 or the hub can't be reached | never download; say what is missing (0: always try) |
| AW_IMAGENET_DIR | unset | a folder of natural images (one sub-folder or more) for EfficientAD's penalty loss |
| AW_QDRANT_URL / AW_QDRANT_API_KEY | unset | a Qdrant server; unset means the embedded store under artifacts/qdrant |
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A sibling folder of real data and weights for air-gapped machines (optional; never required).
DEFAULT_SHARED_ROOT = PROJECT_ROOT.parent / "shared"
_NO_SHARED = {"none", "off", "no", "0", "false"}

# glibc keeps freed 16 MB blocks in its heap during PatchCore's coreset step (20 GB seen); forcing mmap for
# large allocations returns them to the OS. Must be in the environment before Python starts.
# OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads made torch 5-10x slower on a shared 2-core CPU.
TRAINING_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "OMP_WAIT_POLICY": "PASSIVE"}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout_s: float = 2.0) -> bool:
    """Whether the model hub answers at all (once per process): a machine without a network is offline even if
    nobody said so, and then defaults never pick weights that would have to be downloaded."""
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _offline(env) -> bool:
    if _truthy(env.get("AW_OFFLINE")) or _truthy(env.get("HF_HUB_OFFLINE")):
        return True
    if (env.get("AW_OFFLINE") or "").strip():  # explicitly online ("0")
        return False
    return not hub_reachable()


def shared_root(env=None) -> Path | None:
    """The folder of real data and weights beside the checkout, or None: ``AW_SHARED=none`` turns every automatic
    lookup off (CI proves the suite passes as on a user's machine), ``AW_SHARED=DIR`` points elsewhere."""
    value = ((os.environ if env is None else env).get("AW_SHARED") or "").strip()
    if value.lower() in _NO_SHARED:
        return None
    root = Path(value).expanduser() if value else DEFAULT_SHARED_ROOT
    return root.resolve() if root.is_dir() else None


def _paths(value: str | None) -> list[Path]:
    return [Path(p).expanduser() for p in (value or "").split(os.pathsep) if p.strip()]


@dataclass(frozen=True)
class Settings:
    artifacts: Path
    mvtec_root: Path
    weights_dir: Path
    extra_weights_dirs: tuple[Path, ...] = ()
    offline: bool = False
    imagenet_dir: Path | None = None
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)

    @property
    def registry_path(self) -> Path:
        return self.artifacts / "registry.sqlite"

    @property
    def runs_dir(self) -> Path:
        return self.artifacts / "runs"

    @property
    def datasets_dir(self) -> Path:
        return self.artifacts / "datasets"

    @property
    def qdrant_path(self) -> Path:
        return self.artifacts / "qdrant"

    @property
    def weights_search_path(self) -> list[Path]:
        return [self.weights_dir, *self.extra_weights_dirs]

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


def settings() -> Settings:
    env = os.environ
    artifacts = Path(env.get("AW_ARTIFACTS") or PROJECT_ROOT / "artifacts").expanduser().resolve()
    shared = shared_root(env)
    shared_mvtec = shared / "datasets" / "mvtec_ad" if shared else None
    default_mvtec = shared_mvtec if shared_mvtec and shared_mvtec.is_dir() else artifacts / "datasets" / "mvtec_ad"
    if "AW_EXTRA_WEIGHTS_DIRS" in env:
        extra = _paths(env["AW_EXTRA_WEIGHTS_DIRS"])
    else:
        extra = [shared / "weights"] if shared and (shared / "weights").is_dir() else []
    imagenet = env.get("AW_IMAGENET_DIR")
    return Settings(
        artifacts=artifacts,
        mvtec_root=Path(env.get("AW_MVTEC_ROOT") or default_mvtec).expanduser().resolve(),
        weights_dir=Path(env.get("AW_WEIGHTS_DIR") or artifacts / "weights").expanduser().resolve(),
        extra_weights_dirs=tuple(p.resolve() for p in extra),
        offline=_offline(env),
        imagenet_dir=Path(imagenet).expanduser().resolve() if imagenet else None,
        qdrant_url=env.get("AW_QDRANT_URL") or None,
        qdrant_api_key=env.get("AW_QDRANT_API_KEY") or None,
    )
