"""Training runs: follow the runs in progress, queue new ones (datasets × models), browse and manage the history.

All state lives in the run registry, so leaving or reloading the page loses nothing.
"""

from collections.abc import Callable

import pandas as pd
import plotly.express as px
import streamlit as st

from core import models
from core.config import settings
from core.data import datasets, exclusions, importing
from core.data.datasets import DatasetSpec
from core.engine import estimate
from core.engine.audit import audit_dataset, load_audit
from core.errors import WorkbenchError
from core.jobs import cluster, launch, sweep
from core.jobs.queue import cancel, worker_alive
from core.models import weights
from core.models.cost import fmt_duration
from core.store import access
from core.store.artifacts import RunArtifacts
from core.store.runs import QUEUED, RUNNING, Run
from core.store.versions import RunVersions
from core.views import feedback as fb_view
from core.views import overview, trust
from core.views.csv_export import to_csv_bytes
from pages import ui

st.title("Training runs")


# ---- in progress -------------------------------------------------------------------------------------------


def _run_card(run: Run, ahead: int) -> None:
    with st.container(border=True):
        spec = DatasetSpec.from_dict(run.dataset)
        st.markdown(
            f"{ui.STATUS_ICONS.get(run.status, '')} **{overview.model_label(run.model)}** on "
            f"{spec.label} · `{run.id}` · {run.status}"
        )
        with ui.friendly_errors():
            ui.show_warnings(run)
        if run.status == QUEUED:
            st.progress(0.0, text=f"queued · {ahead} run(s) ahead of it" if ahead else "queued · next")
        else:
            progress = min(1.0, max(0.0, run.progress or 0.0))
            st.progress(progress, text=f"{run.phase or 'starting'} · {progress:.0%}")
            eta = run.eta_s
            where = run.extra.get("ray")
            st.caption(
                f"Elapsed {ui.fmt_duration(run.elapsed_s)}"
                + (f" · about {ui.fmt_duration(eta)} left in this phase" if eta is not None else "")
                + (f" · {run.message}" if run.message else "")
                + (f" · on Ray node {where['node_id'][:12]}" if where else "")
            )
        art = RunArtifacts(ui.registry().run_dir(run.id))
        lines = art.log_tail(8)
        if lines:
            st.code("\n".join(lines), language="text")
        loss = art.loss_curve()  # models trained with gradients write one
        if loss:
            fig = px.line(pd.DataFrame(loss), x="step", y="loss", markers=True, height=220, title="Training loss")
            fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
            st.plotly_chart(fig, key=f"loss_{run.id}")
        if not ui.can_write():
            pass  # a viewer follows runs but cannot stop them
        elif run.cancel_requested and run.status == RUNNING:
            st.caption("Cancelling: the run stops at its next progress report.")
            if st.button("Stop now", key=f"force_{run.id}", help="Terminate the run's process if it hasn't stopped"):
                with ui.friendly_errors():
                    cancel(run.id, force_after_s=3)
                st.rerun(scope="fragment")
        elif st.button("Cancel", key=f"cancel_{run.id}"):
            with ui.friendly_errors():
                cancel(run.id)
            st.rerun(scope="fragment")


@st.fragment(run_every=2)
def live_panel() -> None:
    # A fragment reruns on its own, outside the page's acting_as block: its buttons act as the session's user.
    with access.acting_as(*ui.session_identity()):
        _live_panel()


def _live_panel() -> None:
    st.subheader("In progress")
    ray_at = cluster.address()
    if ray_at:
        st.caption(
            f":material/hub: Runs go to the Ray cluster at `{ray_at}` (AW_RAY_ADDRESS); several run at once "
            "as far as its resources allow."
        )
    active = ui.registry().list(status=(QUEUED, RUNNING))
    active.reverse()  # oldest first: the order the worker takes them in
    ids = {r.id for r in active}
    finished_since = st.session_state.get("live_ids", set()) - ids
    st.session_state.live_ids = ids
    if finished_since:
        st.rerun(scope="app")  # a run ended: refresh the whole page so History shows its results
    if not active:
        st.caption("No run is queued or running.")
        return
    if launch.keep_queue_moving():
        st.caption("Started the worker for the queued runs.")
    elif not worker_alive() and not launch.autostart_enabled():
        st.info("Runs are queued but no worker is running (AW_AUTOSTART_WORKER=0): start one with `aw worker`.")
    for ahead, run in enumerate(active):
        _run_card(run, ahead)


live_panel()
launch_tab, history_tab = st.tabs([":material/rocket_launch: New runs", ":material/history: History"])


# ---- new runs ----------------------------------------------------------------------------------------------

SOURCES = ("MVTec AD categories", "Own dataset", "Demo dataset")
OWN_MODES = ("Use an imported dataset", "Import from folders", "Upload a zip")


def _imported(report: importing.ImportReport) -> None:
    """After an import: select the new dataset (runs in a callback, before the widgets exist)."""
    st.session_state.import_msg = ("success", report.lines())
    st.session_state.own_mode = OWN_MODES[0]
    st.session_state.own_dataset = report.spec.category


@ui.as_session_user
def _import_folders() -> None:
    s = st.session_state
    try:
        with st.spinner("Reading and linking the images…"):
            _imported(
                importing.import_folder(
                    s.imp_name,
                    s.imp_normal.strip(),
                    s.imp_abnormal.strip() or None,
                    s.imp_masks.strip() or None,
                    replace=s.get("imp_replace", False),
                )
            )
    except Exception as exc:  # noqa: BLE001 - the guard of this page action
        s.import_msg = ("error", [ui.user_message(exc, "the dataset import")])


@ui.as_session_user
def _import_zip() -> None:
    s = st.session_state
    if s.zip_file is None:
        s.import_msg = ("error", ["Choose a zip file first."])
        return
    try:
        with st.spinner("Unpacking and reading the images…"):
            _imported(
                launch.import_zip_bytes(
                    s.zip_name or s.zip_file.name.rsplit(".", 1)[0],
                    s.zip_file.getvalue(),
                    replace=s.get("zip_replace", False),
                    filename=s.zip_file.name,
                )
            )
    except Exception as exc:  # noqa: BLE001 - the guard of this page action
        s.import_msg = ("error", [ui.user_message(exc, "the dataset import")])


def dataset_choice() -> tuple[list[str], Callable[[], list[DatasetSpec]]]:
    """Dataset widgets. Returns (labels of what will be used, a function building the specs at launch)."""
    cfg = settings()
    on_disk = datasets.available_mvtec_categories(cfg)
    # A newcomer without MVTec AD on disk starts on data that exists: their own datasets, else the demo.
    first = 0 if on_disk else (1 if datasets.list_custom() else 2)
    source = st.radio("Dataset", SOURCES, index=first, horizontal=True, key="source")
    if source == SOURCES[0]:
        cats = st.multiselect(
            "MVTec AD categories (several at once: one run per category and model)",
            datasets.MVTEC_CATEGORIES,
            default=on_disk[:1],
            key="mvtec_cats",
            format_func=lambda c: c if c in on_disk else f"{c} (not on disk)",
        )
        st.caption(
            f"MVTec AD root: {cfg.mvtec_root}"
            + (" · offline: only categories on disk can be used" if cfg.offline else "")
        )
        limit = st.number_input(
            "Use only N training images (0 = all)",
            0,
            10_000,
            0,
            key="mvtec_limit",
            help="An evenly spaced subset, for a quick first look at a category.",
        )
        return cats, lambda: [datasets.mvtec(c, max_train_images=limit or None) for c in cats]
    if source == SOURCES[1]:
        mode = st.radio("Own images", OWN_MODES, horizontal=True, key="own_mode")
        message = st.session_state.pop("import_msg", None)
        if message:
            kind, lines = message
            (st.success if kind == "success" else st.error)(lines[0])
            for note in lines[1:]:
                st.info(note)
        if mode == OWN_MODES[1]:
            st.text_input("Dataset name", key="imp_name", placeholder="e.g. housing_line3")
            st.text_input(
                "Folder of normal (good) images",
                key="imp_normal",
                help="Searched with its sub-folders. 20 % are held out (deterministically) to test on.",
            )
            st.text_input("Folder of abnormal images (optional; sub-folders = defect types)", key="imp_abnormal")
            st.text_input(
                "Folder of masks (optional; paired by file name: x.png ↔ x.png or x_mask.png)", key="imp_masks"
            )
            st.checkbox("Replace an imported dataset of the same name", key="imp_replace")
            st.caption("Your files are not moved or changed: PNGs are linked, other formats converted to PNG.")
            st.button("Import folders", on_click=_import_folders)
            return [], lambda: []
        if mode == OWN_MODES[2]:
            st.text_input("Dataset name (empty = the zip's name)", key="zip_name")
            st.file_uploader(
                "Zip with MVTec's layout, or folders normal/ abnormal/ masks/", type=["zip"], key="zip_file"
            )
            st.checkbox("Replace an imported dataset of the same name", key="zip_replace")
            st.button("Import zip", on_click=_import_zip)
            return [], lambda: []
        names = datasets.list_custom()
        if not names:
            st.info("No own dataset imported yet: import folders or upload a zip first.")
            return [], lambda: []
        name = st.selectbox("Imported dataset", names, key="own_dataset")
        info = datasets.import_info(datasets.custom(name))
        if info.get("counts"):
            st.caption(" · ".join(f"{k}: {v}" for k, v in info["counts"].items()))
        for note in info.get("notes", []):
            st.caption(f"Note: {note}")
        limit = st.number_input("Use only N training images (0 = all)", 0, 100_000, 0, key="own_limit")
        return [name], lambda: [
            DatasetSpec.from_dict({**datasets.custom(name).to_dict(), "max_train_images": limit or None})
        ]
    st.caption("A small synthetic dataset with exact defect masks, generated on first use (a few seconds).")
    return ["demo"], lambda: [datasets.demo()]


def _backbone_label(name: str) -> str:
    return f"{name} ({weights.backbone_status(name)})"


def model_choice() -> dict[str, dict]:
    """Model widgets built from the registry's Param specs. Returns {model name: parameters}."""
    if "models" not in st.session_state:
        st.session_state.models = ["patchcore"]
    runnable = models.runnable_models()

    def _every_model() -> None:
        st.session_state.models = runnable

    names = st.multiselect(
        "Models (several at once: one run per model and dataset)",
        list(models.REGISTRY),
        key="models",
        format_func=lambda n: models.REGISTRY[n].label,
    )
    st.button(
        f"Every model that runs here ({len(runnable)})",
        key="all_models",
        on_click=_every_model,
        icon=":material/select_all:",
        help="Select every registered model whose weights are on this machine (or downloadable when online); "
        "with several categories this queues the whole comparison in one go.",
    )
    for name in models.REGISTRY:
        reason = models.unavailable_reason(name)
        if reason and name in names:
            st.warning(f"{models.REGISTRY[name].label} cannot train here: {reason}.", icon=":material/warning:")
    chosen = {}
    for name in names:
        entry = models.REGISTRY[name]
        defaults = models.default_params(name)
        with st.expander(f"{entry.label} parameters", expanded=True):
            st.caption(entry.description)
            params = {}
            cols = st.columns(2)
            for i, p in enumerate(entry.params):
                with cols[i % 2]:
                    params[p.name] = ui.param_input(
                        p,
                        key=f"param_{name}_{p.name}",
                        default=defaults[p.name],
                        format_func=_backbone_label if p.name == "backbone" else None,
                    )
            if entry.time_note is not None:
                with ui.friendly_errors():
                    st.info(entry.time_note(models.resolve_params(name, params)), icon=":material/timer:")
            with ui.friendly_errors():
                for warning in models.model_warnings(name, params):
                    st.warning(warning, icon=":material/warning:")
        chosen[name] = params
    return chosen


def estimates(build_specs: Callable[[], list[DatasetSpec]], chosen: dict[str, dict]) -> None:
    """Time and memory of each run to be launched, from the dataset's size, before anything starts."""
    try:
        specs = build_specs()
    except WorkbenchError:
        return  # the launch button reports it
    for spec in specs[:6]:
        for name, params in chosen.items():
            try:
                est = estimate.estimate_run(name, params, spec)
            except WorkbenchError:
                continue
            if est is None:
                continue
            text = f"**{models.REGISTRY[name].label} on {spec.label}** · {est.summary()}"
            if est.warnings:
                st.warning(text + " " + " ".join(est.warnings), icon=":material/timer:")
            else:
                st.caption(":material/timer: " + text)
            options = estimate.size_options(name, params, spec)
            if options is not None:  # image_size 0: say what the data chose, why, and what each size costs
                st.info(
                    f"**Image size for {spec.label}: {options.choice.why}**\n\nEach size here: {options.summary()}.",
                    icon=":material/aspect_ratio:",
                )


@ui.as_session_user
def _apply_audit_choice(spec: DatasetSpec, retrain: bool) -> None:
    """Record the gallery's ticks (exclude ticked, include unticked), then optionally queue a retrain."""
    s = st.session_state
    result = load_audit(spec)
    if result is None:
        return
    ticked = {e.name for e in result.entries if s.get(f"audit_x_{e.name}", e.excluded)}
    now = {e.name for e in result.entries if e.excluded}
    try:
        if ticked - now:
            exclusions.exclude_images(spec, sorted(ticked - now), reason=s.get("audit_reason", ""))
        if now - ticked:
            exclusions.include_images(spec, sorted(now - ticked))
        message = f"Excluded now: {', '.join(sorted(ticked)) or 'none'} (your files are unchanged)."
        if retrain:
            run = launch.retrain_without_excluded(spec)
            message += f" Queued run {run.id} ({overview.model_label(run.model)}) without them."
        s.audit_msg = ("success", message)
    except Exception as exc:  # noqa: BLE001 - the guard of this page action
        s.audit_msg = ("error", ui.user_message(exc, "the training-set audit"))


def audit_panel(labels: list[str], build_specs: Callable[[], list[DatasetSpec]]) -> None:
    """Training-set audit of the chosen dataset: k-fold PatchCore ranks the 'good' images; tick and exclude."""
    with st.expander(":material/fact_check: Audit training set — are there defects in the 'good' images?"):
        if len(labels) != 1:
            st.caption("Pick one dataset to audit its training images.")
            return
        with ui.friendly_errors():
            spec = build_specs()[0]
            st.caption(
                "Every training image is scored by a PatchCore fitted on the other folds, so each is judged by a "
                "model that never saw it. Defective 'good' images rise to the top. Excluding is a record: your "
                "files are not changed, and you can include them again."
            )
            folds = st.number_input("Folds", 2, 10, 4, key="audit_folds")
            if st.button("Audit training set", key="audit_run", icon=":material/fact_check:"):
                bar = st.progress(0.0, text="auditing…")
                audit_dataset(
                    spec, k=int(folds), progress=lambda phase, done, total: bar.progress(done / max(total, 1), phase)
                )
                bar.empty()
            result = load_audit(spec)
            message = st.session_state.pop("audit_msg", None)
            if message:
                (st.success if message[0] == "success" else st.error)(message[1])
            if result is None:
                st.caption("Not audited yet.")
                return
            st.markdown(result.statement())
            n = st.slider("Images shown (most anomalous first)", 4, min(40, len(result.entries)), 12, key="audit_n")
            cards = trust.audit_cards(spec, n, result)
            columns = st.columns(4)
            for i, card in enumerate(cards):
                with columns[i % 4]:
                    flag = " · suspicious" if card["suspicious"] else ""
                    st.image(card["image"], caption=f"#{card['rank']} {card['name']} · {card['score']:.3g}{flag}")
                    st.checkbox("exclude", value=card["excluded"], key=f"audit_x_{card['name']}")
            st.text_input("Reason (kept with the exclusion)", key="audit_reason", placeholder="e.g. scratch, top left")
            left, right = st.columns(2)
            left.button(
                "Exclude and retrain",
                type="primary",
                key="audit_retrain",
                on_click=_apply_audit_choice,
                args=(spec, True),
                help="Record the ticked images as excluded and queue a run like the latest one on this dataset.",
            )
            right.button("Only record exclusions", key="audit_apply", on_click=_apply_audit_choice, args=(spec, False))


def sweep_panel(build_specs: Callable[[], list[DatasetSpec]], chosen: dict[str, dict], seed: int) -> None:
    """One run per combination of parameter values, queued as a group (core.jobs.sweep); Compare → Sweeps."""
    with st.expander(":material/tune: Sweep parameters — one run per combination, compared as a group"):
        if len(chosen) != 1:
            st.caption("Pick exactly one model above to sweep its parameters.")
            return
        name, base = next(iter(chosen.items()))
        entry = models.REGISTRY[name]
        text = st.text_area(
            "Values to try, one parameter per line",
            key="sweep_values",
            placeholder="image_size=256,512\ncoreset_sampling_ratio=0.01,0.1",
            help=f"{entry.label}'s parameters: {', '.join(p.name for p in entry.params)}. The other parameters keep "
            "the values set above.",
        )
        if not text.strip():
            st.caption("Every combination becomes one run; the plan and its total time show here before anything runs.")
            return
        specs = build_specs()
        if len(specs) != 1:
            st.caption("Pick exactly one dataset to sweep on.")
            return
        with ui.friendly_errors():
            plan = sweep.plan(name, specs[0], sweep.parse_assignments(text.splitlines()), base=base)
            st.dataframe(
                [
                    {
                        **{k: point[k] for k in plan.grid},
                        "estimate": fmt_duration(e.seconds if e else None),
                        "fit": fmt_duration(e.fit_seconds if e else None),
                    }
                    for point, e in zip(plan.points, plan.estimates, strict=True)
                ],
                hide_index=True,
                key="sweep_plan",
            )
            st.markdown(
                f"**{len(plan.points)} runs** of {entry.label} on {specs[0].label}, estimated in all "
                f"**{fmt_duration(plan.total_seconds)}** on this machine."
            )
            if st.button(f"Queue the sweep ({len(plan.points)} runs)", key="sweep_launch"):
                runs = sweep.launch(plan, seed)
                st.success(
                    f"Queued {len(runs)} runs as **{runs[0].extra['sweep']['id']}**. Compare models → Sweeps charts "
                    "them as they finish."
                )


def launch_form() -> None:
    labels, build_specs = dataset_choice()
    audit_panel(labels, build_specs)
    chosen = model_choice()
    seed = st.number_input(
        "Seed", min_value=0, value=0, step=1, key="seed", help="Same seed, data and parameters = the same run again."
    )
    estimates(build_specs, chosen)
    sweep_panel(build_specs, chosen, int(seed))
    n = len(labels) * len(chosen)
    if not st.button(f"Launch {n} run(s)" if n else "Launch", type="primary", key="launch", disabled=n == 0):
        return
    queued, failures = [], {}
    with st.spinner("Checking data, weights and parameters…"), ui.friendly_errors():
        for spec in build_specs():
            for name, params in chosen.items():
                try:
                    queued.append(launch.queue(name, spec, params, int(seed)))
                except WorkbenchError as exc:  # collected so one missing file doesn't hide the other runs
                    failures.setdefault(str(exc), []).append(f"{models.REGISTRY[name].label} on {spec.label}")
        if queued:
            launch.start_worker()
    for message, what in failures.items():
        st.error(f"Not queued: {', '.join(what)}.\n\n{message}")
    if queued:
        st.success(
            f"Queued {len(queued)} run(s): {', '.join(r.id for r in queued)}. Follow them under **In progress** above."
        )


with launch_tab:
    if ui.can_write():
        launch_form()
    else:
        st.info(ui.read_only_note(), icon=":material/lock:")


# ---- history -----------------------------------------------------------------------------------------------


def _select_from_table() -> None:
    rows = st.session_state.history_table.selection.rows
    if rows:
        st.session_state.history_run = st.session_state.history_ids[rows[0]]


def _kv_table(data: dict) -> None:
    flat = {k: ui.fmt(v) if not isinstance(v, (dict, list)) else str(v) for k, v in data.items()}
    st.dataframe(pd.DataFrame({"value": flat}), width="stretch")


def versions_block(run: Run) -> None:
    """The run's lineage when an engineer corrected it (feedback makes versions, never edits)."""
    store = RunVersions(ui.registry().run_dir(run.id))
    lineage, marks = store.lineage(), store.feedback()
    if len(lineage) == 1 and not marks:
        return
    st.markdown("**Versions** (feedback makes a new version of the run, never an edit)")
    st.dataframe(fb_view.lineage_frame(lineage, store.current()), hide_index=True, key=f"versions_{run.id}")
    normals = sum(f.kind == "normal" for f in marks)
    st.caption(
        f"{len(marks)} feedback mark(s): {normals} normal, {len(marks) - normals} defect. Pick a version, undo or "
        "mark images on the Heatmap viewer (Inspect), or with `aw versions` / `aw undo` / `aw feedback`."
    )


def run_detail(run: Run) -> None:
    spec = DatasetSpec.from_dict(run.dataset)
    st.markdown(
        f"#### {ui.STATUS_ICONS.get(run.status, '')} {overview.model_label(run.model)} on {spec.label} "
        f"· `{run.id}` · {run.status}"
    )
    with ui.friendly_errors():
        ui.show_warnings(run)
    if run.error:
        st.error(run.error)
    if run.extra.get("index_error"):
        st.warning(f"Similarity indexing failed (results are kept): {run.extra['index_error']}")
    m = run.metrics
    if m:
        cols = st.columns(4)
        for col, (label, key) in zip(
            cols,
            [
                ("image AUROC", "image_auroc"),
                ("pixel AUROC", "pixel_auroc"),
                ("image F1", "image_f1"),
                ("AUPRO", "aupro"),
            ],
            strict=False,
        ):
            value = m.get(key)
            col.metric(label, "not available" if value is None else ui.fmt(value))
        for note in m.get("notes", []):
            st.caption(note)
        if m.get("threshold_source") and m.get("image_threshold") is not None:
            st.caption(f"Threshold {ui.fmt(m['image_threshold'])} (raw score): {m['threshold_source']}.")
        if m.get("per_defect"):
            st.dataframe(pd.DataFrame(m["per_defect"]).T, width="stretch")
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Parameters**")
        st.json({**run.params, "seed": run.seed}, expanded=True)
        if run.extra.get("chosen_for_data"):
            st.caption(f"Image size chosen for the data: {run.extra['chosen_for_data']['why']}")
        st.markdown("**Dataset**")
        st.json(run.dataset, expanded=False)
        st.markdown("**Timings (s / MB)**")
        _kv_table({**run.timings, "total s": run.elapsed_s})
    with c2:
        st.markdown("**Latency**")
        if run.latency:
            _kv_table(run.latency)
        else:
            st.caption("Not measured yet." if not run.finished else "Not measured (the run did not reach timing).")
        st.markdown("**Environment and versions**")
        if run.environment:
            st.json(run.environment, expanded=False)
        else:
            st.caption("Not recorded.")
    if m:
        with st.expander("All metrics"):
            st.json(m)
    versions_block(run)

    if run.status == "done":
        ui.open_run_buttons(run, key="history_open")
    if not ui.can_write():
        return
    a1, a2, _ = st.columns([1, 1, 4])
    if a1.button("Re-run", key="rerun", help="Queue a new run with the same model, data, parameters and seed"):
        with ui.friendly_errors():
            new = launch.rerun(run.id)
            st.session_state.history_flash = f"Queued {new.id}, a re-run of {run.id}."
            st.rerun()
    if a2.button("Delete…", key="delete"):
        st.session_state.confirm_delete = run.id
    if st.session_state.get("confirm_delete") == run.id:
        st.warning(f"Delete run {run.id} with its model, results and log? This cannot be undone.")
        y, n, _ = st.columns([1, 1, 4])
        if y.button("Yes, delete", key="confirm_delete_yes", type="primary"):
            with ui.friendly_errors():
                ui.registry().delete(run.id)
                st.session_state.history_flash = f"Deleted run {run.id}."
                st.session_state.pop("history_run", None)
                st.session_state.pop("confirm_delete", None)
                st.rerun()
        if n.button("Keep it", key="confirm_delete_no"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()


def history() -> None:
    flash = st.session_state.pop("history_flash", None)
    if flash:
        st.success(flash)
    runs = ui.registry().list()
    if not runs:
        st.info("No runs yet.")
        return
    frame = overview.runs_frame(runs)
    statuses = sorted(frame["status"].unique())
    shown = st.multiselect("Status", statuses, default=statuses, key="history_status")
    frame = frame[frame["status"].isin(shown)].reset_index(drop=True)
    st.session_state.history_ids = list(frame["id"])
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config=ui.run_table_config(),
        on_select=_select_from_table,
        selection_mode="single-row",
        key="history_table",
    )
    st.download_button(
        "Download table (CSV)", to_csv_bytes(frame), file_name="anomaly_workbench_runs.csv", mime="text/csv"
    )
    if frame.empty:
        return
    by_id = {r.id: r for r in runs}
    if st.session_state.get("history_run") not in list(frame["id"]):
        st.session_state.pop("history_run", None)  # deleted or filtered out: fall back to the newest
    run_id = st.selectbox(
        "Run details (or click a row above)",
        list(frame["id"]),
        key="history_run",
        format_func=lambda i: f"{i} · {overview.model_label(by_id[i].model)} · {by_id[i].category} · {by_id[i].status}",
    )
    run_detail(by_id[run_id])


with history_tab:
    history()
