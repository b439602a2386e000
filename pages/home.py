"""Home: what the workbench does, what it found on this machine, the latest runs, and a first run in one click."""

import pandas as pd
import streamlit as st

from core import launch, overview
from pages import ui

st.title("Anomaly Workbench")
st.markdown(
    "Train and compare visual anomaly-detection models (**PatchCore**, **EfficientAD**) for industrial "
    "inspection, on MVTec AD categories, your own image folders or zips, or a synthetic demo dataset. "
    "Models learn from normal images only; inspect where they see defects in the heatmap viewer, and find "
    "similar past cases."
)

# ---- first run ---------------------------------------------------------------------------------------------
st.subheader("Start here")
plan = launch.first_run_plan()


def _queue_first_run() -> None:
    with st.spinner("Preparing the demo data and checking the model…"), ui.friendly_errors():
        run = launch.queue_first_run(plan)
        st.session_state.home_first_run = run.id
        st.session_state.home_explain = False


if st.button("Train a first model on the demo data", type="primary"):
    if plan.params is None:
        st.session_state.home_explain = True
    else:
        _queue_first_run()
if plan.params is not None:
    st.caption(plan.explanation + " A few minutes on a laptop CPU.")
elif st.session_state.get("home_explain"):
    st.warning(plan.explanation, icon="⚠️")

if st.session_state.get("home_first_run"):
    with ui.friendly_errors():
        run = ui.registry().get(st.session_state.home_first_run)
        st.success(f"Run **{run.id}** is {run.status}: PatchCore ({run.params.get('backbone')}) on the demo data.")
        st.page_link("pages/training.py", label="Follow it on Training runs", icon="🏋️")

# ---- what this machine has ---------------------------------------------------------------------------------
st.subheader("What the workbench found")
info = overview.machine_overview()
c1, c2, c3 = st.columns(3)
with c1:
    st.markdown("**Connection**")
    if info.offline:
        st.write("🔌 Offline: nothing is downloaded; only weights and data on this machine are used.")
    else:
        st.write("🌐 Online: missing weights and MVTec AD categories are downloaded on first use.")
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
    st.write(", ".join(info.custom_datasets) if info.custom_datasets
             else "None imported yet (import folders or a zip on Training runs).")
    st.caption("The synthetic demo dataset is always available.")

st.markdown("**Weights**")
st.dataframe(pd.DataFrame(info.weights), hide_index=True, width="stretch")
if not info.backbones:
    st.caption("No PatchCore backbone is usable: import one with `python -m core weights import <folder>`.")
st.caption(f"Runs, imported data and weights live in {info.artifacts}")

# ---- latest runs -------------------------------------------------------------------------------------------
st.subheader("Latest runs")
latest = ui.registry().list(limit=8)
if latest:
    st.dataframe(overview.runs_frame(latest), hide_index=True, width="stretch", column_config=ui.run_table_config())
else:
    st.info("No runs yet: train a first model above, or launch runs on Training runs.")
st.page_link("pages/training.py", label="All runs and new runs: Training runs", icon="🏋️")
