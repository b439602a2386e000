"""A run's versions: feedback makes a new version of the model, never an edit of the old one.

Version 1 is what training left in the run folder (``model.safetensors``, ``model.json``, ``bank_provenance.npz``);
every later version has its own folder ``versions/v<N>/`` with its own model files, written once. ``versions.json``
keeps the lineage (one row per version: number, parent, what changed, who, when, note, the feedback image and the
images that left the evaluation set) and a *current* pointer, which is what loading a run picks by default.
Undo moves the pointer back to the parent; the undone version stays on disk and in the lineage (it can be picked
again). The run's feedback (normal and defect marks, whether or not they made a version) is kept in the same file.

    >>> from pathlib import Path; import tempfile
    >>> store = RunVersions(Path(tempfile.mkdtemp()))
    >>> store.current()
    1
    >>> v = store.create(parent=1, change="mark normal: a.png", who="ana", note="lighting", files={"x.txt": b"1"},
    ...                  feedback_image="a.png")
    >>> (v.version, v.parent, store.current(), sorted(store.excluded(2)))
    (2, 1, 2, ['a.png'])
    >>> store.undo().version
    1
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import RunError
from core.store import access
from core.store.artifacts import read_json, write_json

VERSIONS_FILE = "versions.json"
VERSIONS_DIR = "versions"

# What a file of a new version is: bytes, or a function that writes it to the given path.
FileContent = bytes | Callable[[Path], None]


class VersionError(RunError):
    """A version does not exist, or the request does not fit the run's lineage (e.g. undo at version 1)."""


def default_who() -> str:
    """The signed-in dashboard user, else the operating-system user (core.store.access)."""
    return access.actor()


@dataclass
class Version:
    version: int
    parent: int | None
    change: str
    who: str
    when: float
    note: str = ""
    feedback_image: str | None = None  # the image this version's change was about
    excluded: list[str] = field(default_factory=list)  # images out of this version's evaluation set (cumulative)
    facts: dict = field(default_factory=dict)  # e.g. bank size, patches added, seconds

    @property
    def label(self) -> str:
        return f"v{self.version}" + (f" (from v{self.parent})" if self.parent else "") + f": {self.change}"


@dataclass
class Feedback:
    """One user mark on an image of a run."""

    kind: str  # "normal" | "defect"
    image: str
    who: str
    when: float
    note: str = ""
    defect_type: str | None = None
    version: int | None = None  # the version it created (a bank model's normal mark), else None
    applied: bool = False  # in a model version (bank models) or used by a retraining


class RunVersions:
    """The lineage, the current-version pointer and the feedback of one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / VERSIONS_FILE

    # -- reading ----------------------------------------------------------------------------------------------
    def _data(self) -> dict:
        data = read_json(self.path)
        if data is None:  # a run without feedback yet: version 1 is the trained model
            when = (self.run_dir / "model.json").stat().st_mtime if (self.run_dir / "model.json").exists() else 0.0
            first = Version(1, None, "trained", "training", when)
            data = {"current": 1, "versions": [asdict(first)], "feedback": [], "events": []}
        return data

    def lineage(self) -> list[Version]:
        return [Version(**row) for row in self._data()["versions"]]

    def current(self) -> int:
        return int(self._data()["current"])

    def get(self, version: int | None = None) -> Version:
        data = self._data()
        number = int(data["current"] if version is None else version)
        for row in data["versions"]:
            if row["version"] == number:
                return Version(**row)
        known = ", ".join(f"v{row['version']}" for row in data["versions"])
        raise VersionError(f"Run {self.run_dir.name} has no version {number} (it has {known}).")

    def model_dir(self, version: int | None = None) -> Path:
        """The folder with the version's model files (version 1: the run folder itself)."""
        number = self.get(version).version
        return self.run_dir if number == 1 else self.run_dir / VERSIONS_DIR / f"v{number}"

    def excluded(self, version: int | None = None) -> set[str]:
        return set(self.get(version).excluded)

    def feedback(self) -> list[Feedback]:
        return [Feedback(**row) for row in self._data()["feedback"]]

    def events(self) -> list[dict]:
        """Pointer moves (new version, undo, pick), oldest first."""
        return list(self._data()["events"])

    # -- writing ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        """The data, read and written back under an exclusive lock (two pages or a page and the CLI at once)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "versions.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._data()
            yield data
            write_json(self.path, data)

    def create(
        self,
        parent: int,
        change: str,
        who: str | None,
        note: str,
        files: dict[str, FileContent],
        feedback_image: str | None = None,
        facts: dict | None = None,
    ) -> Version:
        """A new version from ``parent`` with its own folder of ``files``; it becomes the current version."""
        self.get(parent)  # it exists
        with self._locked() as data:
            number = max(row["version"] for row in data["versions"]) + 1
            folder = self.run_dir / VERSIONS_DIR / f"v{number}"
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name, content in files.items():
                if isinstance(content, bytes):
                    (tmp / name).write_bytes(content)
                else:
                    content(tmp / name)
            if folder.exists():  # never overwrite a version's files
                raise VersionError(f"Version folder {folder} already exists; the lineage file is out of step.")
            tmp.rename(folder)  # the version appears whole or not at all
            excluded = sorted({*self._row(data, parent)["excluded"], *([feedback_image] if feedback_image else [])})
            version = Version(
                number, parent, change, who or default_who(), time.time(), note, feedback_image, excluded, facts or {}
            )
            data["versions"].append(asdict(version))
            data["events"].append({"event": "create", "to": number, "from": data["current"], "when": version.when})
            data["current"] = number
        return version

    @staticmethod
    def _row(data: dict, number: int) -> dict:
        return next(row for row in data["versions"] if row["version"] == number)

    def set_current(self, version: int, who: str | None = None) -> Version:
        """Make ``version`` the one every page and command loads."""
        target = self.get(version)
        with self._locked() as data:
            data["events"].append(
                {
                    "event": "pick",
                    "to": target.version,
                    "from": data["current"],
                    "who": who or default_who(),
                    "when": time.time(),
                }
            )
            data["current"] = target.version
        return target

    def undo(self, who: str | None = None) -> Version:
        """Back to the current version's parent (the undone version is kept). Returns the new current version."""
        current = self.get()
        if current.parent is None:
            raise VersionError(f"Run {self.run_dir.name} is at its trained version v1: there is nothing to undo.")
        with self._locked() as data:
            data["events"].append(
                {
                    "event": "undo",
                    "to": current.parent,
                    "from": current.version,
                    "who": who or default_who(),
                    "when": time.time(),
                }
            )
            data["current"] = current.parent
        return self.get(current.parent)

    def add_feedback(self, feedback: Feedback) -> Feedback:
        with self._locked() as data:
            data["feedback"].append(asdict(feedback))
        return feedback

    def mark_applied(self, images: list[str]) -> None:
        """Feedback on ``images`` is now in a model (used by a retraining)."""
        with self._locked() as data:
            for row in data["feedback"]:
                if row["image"] in images:
                    row["applied"] = True
