"""Small helpers every page shares: cached core objects, run pickers, and errors shown as messages.

Pages are thin views over ``core``; this module only adapts ``core`` to Streamlit (caching, widgets).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from core.config import settings
from core.engine import estimate
from core.errors import WorkbenchError
from core.models import get_entry, model_warnings
from core.runtime import set_threads
from core.store import access
from core.store.artifacts import RunArtifacts
from core.store.runs import DONE, Run, RunRegistry
from core.store.versions import RunVersions
from core.views import viewer


def registry() -> RunRegistry:
    # Cheap (opens SQLite per call); not cached so a changed AW_ARTIFACTS (tests) is always honoured.
    return RunRegistry(settings())


def _model_key(run: Run) -> tuple[str, float, int]:
    """A run's folder, checkpoint time and current version: a re-trained or corrected run reloads."""
    art = RunArtifacts(registry().run_dir(run.id))
    mtime = art.checkpoint.stat().st_mtime if art.checkpoint.exists() else 0.0
    return str(art.run_dir), mtime, RunVersions(art.run_dir).current()


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def _loaded_model(run_dir: str, mtime: float, version: int):
    from core.engine.inference import LoadedModel  # torch: loaded when a page first needs a model, not at start-up

    set_threads()
    return LoadedModel(Path(run_dir), version=version)  # a version's files never change: (run, version) is a key


def loaded_model(run: Run):
    """The run's model at its current version, loaded once and kept (a re-trained or corrected run reloads)."""
    return _loaded_model(*_model_key(run))


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def _fastest_model(run_dir: str, mtime: float, version: int = 1):
    from core.engine.export import fastest_model  # torch: loaded when a page first needs a model, not at start-up

    return fastest_model(Path(run_dir))


def fastest_model(run: Run):
    """For scoring uploads: the run's validated OpenVINO export when there is one, else the torch model.
    (Similarity search needs the torch model's features: use ``loaded_model`` there.)"""
    return _fastest_model(*_model_key(run))


def version_model(run: Run, version: int):
    """The run's model at ``version`` (any of its versions, current or not), loaded once and kept: the same cache
    entry as ``loaded_model`` when ``version`` is the current one."""
    run_dir, mtime, _ = _model_key(run)
    return _loaded_model(run_dir, mtime, version)


def current_version(run: Run) -> int:
    return RunVersions(registry().run_dir(run.id)).current()


def pick_version(run: Run, key: str) -> int:
    """The run's model version to look at: a select box when the run has been corrected (more than one version),
    opening on the current one; else 1 without a widget. Feedback callbacks pop ``key`` to show the new current."""
    from core.views import feedback as fb_view

    store = RunVersions(registry().run_dir(run.id))
    lineage, current = store.lineage(), store.current()
    if len(lineage) == 1:
        st.session_state.pop(key, None)  # another run's choice must not linger
        return current
    numbers = [v.version for v in lineage]
    if st.session_state.get(key) not in numbers:
        st.session_state[key] = current
    return st.selectbox(
        "Model version",
        numbers,
        key=key,
        format_func=lambda n: fb_view.version_label(lineage[numbers.index(n)], current),
        help="Feedback makes a new version of the run, never an edit; undo returns to the parent. Stored test "
        "scores (cards, charts) are the trained version's (v1); live scoring and 'Why flagged' use this version.",
    )


def can_write() -> bool:
    """Whether this session may change things (launch, import, delete, export, feedback): pages hide those
    buttons otherwise; core refuses them anyway (core.store.access)."""
    with access.acting_as(*session_identity()):
        return not access.read_only()


def read_only_note() -> str:
    """Why this session's write buttons are hidden."""
    if session_identity()[1] == access.VIEWER:
        return (
            "Your account has the viewer role: you can look at everything; launching, importing, deleting and "
            "feedback need the engineer role."
        )
    return "This dashboard is read-only (a demo screen): you can look at everything, but nothing can be changed."


# ---- login -------------------------------------------------------------------------------------------------

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def auth_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` (or ``--secrets.files``) configures an OIDC provider for ``st.login``."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file, or one that does not parse: no login configured
        return False


def exposed() -> bool:
    """Whether the server listens beyond this machine (``AW_HOST`` / ``server.address``; unset means everywhere)."""
    return (st.get_option("server.address") or "0.0.0.0") not in LOOPBACK


def sign_in_page() -> None:
    """The only page a visitor sees until the plant's identity provider (OIDC, ``st.login``) knows them."""
    st.title("Anomaly Workbench")
    st.markdown(
        "Sign in with your plant account to see the runs. **Viewers** can look at every page; **engineers** can "
        "also launch runs, import data, give feedback and delete."
    )
    st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, key="login")


def session_identity() -> tuple[str | None, str | None]:
    """(who, role) of this browser session: the signed-in user and their role, or (None, None) without a login."""
    if not auth_configured() or not st.user.get("is_logged_in"):
        return None, None
    claims = st.user.to_dict()
    return str(claims.get("email") or claims.get("sub") or "signed-in user"), access.role_of(claims)


def as_session_user(callback: Callable) -> Callable:
    """For button callbacks: they run before the page script, outside its ``acting_as`` block, so they set the
    session's user and role themselves (a viewer's write is refused in core even from a crafted request)."""

    @functools.wraps(callback)
    def wrapped(*args, **kwargs):
        with access.acting_as(*session_identity()):
            return callback(*args, **kwargs)

    return wrapped


@st.cache_data(max_entries=16, show_spinner=False)
def _records(run_dir: str, mtime: float):
    art = RunArtifacts(Path(run_dir))
    return art.records, art.maps, art.masks


def run_records(run: Run):
    """(records DataFrame, anomaly maps, ground-truth masks) of a finished run, cached."""
    art = RunArtifacts(registry().run_dir(run.id))
    mtime = art.records_path.stat().st_mtime if art.records_path.exists() else 0.0
    return _records(str(art.run_dir), mtime)


def run_label(run: Run) -> str:
    entry = get_entry(run.model)
    detail = run.params.get("backbone") or run.params.get("model_size") or ""
    return f"{entry.label} ({detail}) · {run.category} · {run.id}"


def finished_runs() -> list[Run]:
    return [r for r in registry().list(status=DONE)]


FOCUS = "focus_run"  # the run a user last chose to look at (Home's first run, a History row): pages open on it
PAGES = {"compare": "pages/compare.py", "heatmaps": "pages/heatmaps.py", "similar": "pages/similarity.py"}


def take_focus(key: str) -> str | None:
    """The focused run id if the widget ``key`` has not been shown it yet (then it is marked as shown)."""
    focus = st.session_state.get(FOCUS)
    if focus and st.session_state.get(f"{key}__focus") != focus:
        st.session_state[f"{key}__focus"] = focus
        return focus
    return None


def open_run_buttons(run: Run, key: str) -> None:
    """One click from a run to the pages that show it, with the run already picked there."""
    cols = st.columns(3)
    for col, (label, icon, page) in zip(
        cols,
        (
            ("Compare models", ":material/bar_chart:", PAGES["compare"]),
            ("See its heatmaps", ":material/layers:", PAGES["heatmaps"]),
            ("Find similar cases", ":material/image_search:", PAGES["similar"]),
        ),
        strict=False,
    ):
        if col.button(label, icon=icon, key=f"{key}_{page}", width="stretch"):
            st.session_state[FOCUS] = run.id
            st.switch_page(page)


def pick_run(label: str, key: str, runs: list[Run] | None = None) -> Run | None:
    """A select box over finished runs; remembers the choice in the URL-free session state and opens on the
    focused run (see ``open_run_buttons``) when there is one."""
    runs = finished_runs() if runs is None else runs
    if not runs:
        st.info("No finished runs yet. Train one on the **Training runs** page (the demo dataset takes seconds).")
        st.page_link("pages/training.py", label="Go to Training runs", icon=":material/model_training:")
        return None
    # Real results first (newest first within each group): a demo should open on a run that means something,
    # not on a pipeline check such as an untrained-teacher EfficientAD.
    runs = sorted(runs, key=lambda r: bool(model_warnings(r.model, r.params)))
    by_id = {r.id: r for r in runs}
    focus = take_focus(key)
    if focus in by_id:
        st.session_state[key] = focus
    chosen = st.selectbox(label, list(by_id), format_func=lambda i: run_label(by_id[i]), key=key)
    return by_id.get(chosen)


def open_run(key: str, runs: list[Run] | None = None) -> Run:
    """A page's opening: pick one of ``runs`` (default: the finished ones, see ``pick_run``) and show its caveats.
    Stops the page when there is no run to show."""
    run = pick_run("Run", key=key, runs=runs)
    if run is None:
        st.stop()
    with friendly_errors():  # a run made by an older build may have parameters this build no longer knows
        show_warnings(run)
    return run


def open_records(run: Run) -> tuple:
    """(records, anomaly maps, ground-truth masks, display settings) of a finished run. Shows why and stops the
    page when they cannot be read."""
    records = None
    with friendly_errors():
        records, maps, masks = run_records(run)
        display = viewer.display_settings(registry().run_dir(run.id))
    if records is None:
        st.stop()
    return records, maps, masks, display


def pipeline_check(run: Run) -> bool:
    """True for runs whose numbers are not a quality result (e.g. an untrained EfficientAD teacher)."""
    return bool(model_warnings(run.model, run.params))


def show_warnings(run: Run) -> None:
    for warning in model_warnings(run.model, run.params):
        st.warning(warning, icon=":material/warning:")


def user_message(exc: Exception, where: str) -> str:
    """What a user sees for ``exc``: a WorkbenchError's own message; anything else one line naming the incident
    whose traceback went to the errors log (core.store.incidents)."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    from core.store import incidents

    return incidents.record(exc, where)


def page_name() -> str:
    try:
        return f"the {st.context.url.rstrip('/').rsplit('/', 1)[-1] or 'home'} page"
    except Exception:  # noqa: BLE001 - outside a browser session (AppTest): a generic name
        return "the dashboard"


@contextmanager
def friendly_errors(where: str | None = None) -> Iterator[None]:
    """The guard around a page action: a WorkbenchError as its own red message, anything unexpected as one line
    with an incident id (the traceback goes to the errors log), never a traceback on screen."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - Streamlit's st.stop/st.rerun are BaseExceptions and pass through
        st.error(user_message(exc, where or page_name()))


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ---- added for Home / Training runs (usable by any page) ---------------------------------------------------

# Material Symbols ship with Streamlit: they render offline on machines without an emoji font (kiosks, plant PCs).
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":blue[:material/play_circle:]",
    "done": ":green[:material/check_circle:]",
    "failed": ":red[:material/error:]",
    "cancelled": ":gray[:material/cancel:]",
}


fmt_duration = estimate.fmt_duration  # one formatter for the CLI, the estimate and the pages


def param_input(param, key: str, default=None, format_func=None):
    """One widget for a ``core.models.Param``: choice → selectbox, int/float → number_input within the
    declared range, anything else → text_input. ``default`` overrides the Param's own (e.g. a resolved
    callable default); the help text is the registry's."""
    default = param.default if default is None else default
    default = default() if callable(default) else default
    label = param.name.replace("_", " ")
    if param.kind == "choice":
        options = list(param.choices)
        index = options.index(default) if default in options else 0
        return st.selectbox(label, options, index=index, help=param.help, key=key, format_func=format_func or str)
    if param.kind == "int":
        return st.number_input(
            label + (" (0 = follow the data)" if param.auto else ""),
            value=int(default),
            step=1,
            help=param.help,
            key=key,
            min_value=0 if param.auto else int(param.min) if param.min is not None else None,
            max_value=int(param.max) if param.max is not None else None,
        )
    if param.kind == "float":
        # One step = a tenth of the default's order of magnitude (0.1 → 0.01, 1e-4 → 1e-5); %g keeps
        # small values such as learning rates readable.
        step = 10 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.01
        return st.number_input(
            label,
            value=float(default),
            step=float(step),
            format="%g",
            help=param.help,
            key=key,
            min_value=float(param.min) if param.min is not None else None,
            max_value=float(param.max) if param.max is not None else None,
        )
    return st.text_input(label, value=str(default or ""), help=param.help, key=key)


def run_table_config() -> dict:
    """Column formats for ``core.views.overview.runs_frame`` tables (Home, Training runs)."""
    metric = lambda label: st.column_config.NumberColumn(label, format="%.3f")  # noqa: E731
    return {
        "id": st.column_config.TextColumn("run id"),
        "image AUROC": metric("image AUROC"),
        "pixel AUROC": metric("pixel AUROC"),
        "image F1": metric("image F1"),
        "AUPRO": metric("AUPRO"),
        "fit s": st.column_config.NumberColumn("fit s", format="%.1f", help="Training (fit) time in seconds"),
        "img/s": st.column_config.NumberColumn("img/s", format="%.1f", help="Images per second, batch size 1"),
        "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        "note": st.column_config.TextColumn(
            "note", help="'pipeline check only': random backbone or untrained teacher, numbers are not a quality result"
        ),
    }
