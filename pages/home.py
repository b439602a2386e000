"""Home: what the workbench does, what it found on this machine, the latest runs, and a first run in one click."""

import pandas as pd
import streamlit as st

from core import models
from core.jobs import launch
from core.views import overview
from pages import ui

st.title("Anomaly Workbench")
st.markdown(
    "Train and compare visual anomaly-detection models "
    f"({', '.join(f'**{e.label}**' for e in models.REGISTRY.values())}) "
    "for industrial inspection, on MVTec AD categories, your own image folders or zips, or a synthetic demo "
    "dataset. Models learn from normal images only; inspect where they see defects in the heatmap viewer, and "
    "find similar past cases."
)

# ---- first run ---------------------------------------------------------------------------------------------
st.subheader("Start here")
plan = launch.first_run_plan()


def _queue_first_run() -> None:
    with st.spinner("Preparing the demo data and checking the model…"), ui.friendly_errors():
        run = launch.queue_first_run(plan)
        st.session_state.home_first_run = run.id
        st.session_state.home_explain = False


if not ui.can_write():
    st.caption(ui.read_only_note())
elif st.button("Train a first model on the demo data", type="primary"):
    if plan.params is None:
        st.session_state.home_explain = True
    else:
        _queue_first_run()
if plan.params is not None:
    st.caption(plan.explanation + " A few minutes on a laptop CPU.")
elif st.session_state.get("home_explain"):
    st.warning(plan.explanation, icon=":material/warning:")


@st.fragment(run_every=2)
def first_run_live(run_id: str) -> None:
    """The first run while it trains: progress every 2 s; when it ends, the whole page reruns to show the result
    (buttons that switch pages must not live in a fragment: a page switched from one stayed blank)."""
    with ui.friendly_errors():
        run = ui.registry().get(run_id)
        if run.finished:
            st.rerun(scope="app")
        st.progress(
            min(1.0, max(0.0, run.progress or 0.0)),
            text=f"Run {run.id}: {run.phase or run.status} · {ui.fmt_duration(run.elapsed_s)} so far",
        )
        launch.keep_queue_moving()


def latest_result(run) -> None:
    """A finished run's headline numbers and one click to each page that shows it."""
    m, lat = run.metrics, run.latency
    st.success(f"**{ui.run_label(run)}** finished in {ui.fmt_duration(run.elapsed_s)}.", icon=":material/check_circle:")
    cols = st.columns(4)
    for col, (label, value) in zip(
        cols,
        [
            ("image AUROC", m.get("image_auroc")),
            ("pixel AUROC", m.get("pixel_auroc")),
            ("image F1", m.get("image_f1")),
            ("images / s", lat.get("images_per_s_b1")),
        ],
        strict=False,
    ):
        col.metric(label, "not available" if value is None else ui.fmt(value, 2 if label == "images / s" else 3))
    ui.open_run_buttons(run, key="home_open")


first = None
if st.session_state.get("home_first_run"):
    with ui.friendly_errors():
        first = ui.registry().get(st.session_state.home_first_run)
if first is not None and not first.finished:
    first_run_live(first.id)
elif first is not None and first.status != "done":
    st.error(f"Run {first.id} {first.status}: {first.error or first.message}")
    st.page_link("pages/training.py", label="See it on Training runs", icon=":material/model_training:")
else:
    done = ui.finished_runs()
    real = [r for r in done if not ui.pipeline_check(r)]
    shown = first or (real or done or [None])[0]
    if shown is not None:
        if first is None:
            st.markdown("**Latest result**")
        latest_result(shown)

# ---- what this machine has ---------------------------------------------------------------------------------
st.subheader("What the workbench found")
info = overview.machine_overview()
c1, c2, c3 = st.columns(3)
with c1:
    st.markdown("**Connection**")
    if info.offline:
        st.write(":material/cloud_off: Offline: nothing is downloaded; only weights and data on this machine are used.")
    else:
        st.write(":material/cloud_done: Online: missing weights and MVTec AD categories are downloaded on first use.")
with c2:
    st.markdown("**MVTec AD**")
    if info.mvtec_categories:
        st.write(f"{len(info.mvtec_categories)} of 15 categories: {', '.join(info.mvtec_categories)}")
    elif info.offline:
        st.write("No category found. Unpack the MVTec AD archive there, or set AW_MVTEC_ROOT.")
    else:
        st.write("No category on disk yet; anomalib downloads MVTec AD there on first use.")
    st.caption(f"Root: {info.mvtec_root}")
with c3:
    st.markdown("**Own datasets**")
    st.write(
        ", ".join(info.custom_datasets)
        if info.custom_datasets
        else "None imported yet (import folders or a zip on Training runs)."
    )
    st.caption("The synthetic demo dataset is always available.")

st.markdown("**Weights**")
st.dataframe(pd.DataFrame(info.weights), hide_index=True, width="stretch")
if not info.backbones:
    st.caption("No PatchCore backbone is usable: import one with `aw weights import <folder>`.")
st.caption(f"Runs, imported data and weights live in {info.artifacts}")

# ---- latest runs -------------------------------------------------------------------------------------------
st.subheader("Latest runs")
latest = ui.registry().list(limit=8)
if latest:
    st.dataframe(overview.runs_frame(latest), hide_index=True, width="stretch", column_config=ui.run_table_config())
else:
    st.info("No runs yet: train a first model above, or launch runs on Training runs.")
st.page_link("pages/training.py", label="All runs and new runs: Training runs", icon=":material/model_training:")
