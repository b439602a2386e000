"""Anomaly Workbench — the entry point: page config, navigation, and recovery of interrupted runs.

Why the pages have url_paths that differ from their file names: a ``pages/`` folder next to the main script
makes Streamlit treat the app as a legacy multipage app until ``st.navigation`` has run once in the server
process (and in every ``AppTest`` run). In that mode a requested page whose name matches a file in
``pages/`` would be executed on its own, skipping this script. With distinct url_paths no legacy page
matches, so Streamlit falls back to this script, and ``st.navigation`` below picks the page.
"""

import os

# Set before torch loads: sleeping (not spinning) OpenMP threads keep a 2-core machine responsive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st

from pages import ui

st.set_page_config(page_title="Anomaly Workbench", layout="wide")

# Once per browser session: runs whose worker died (crash, kill -9, reboot) are shown as failed, not running.
if "recovered_runs" not in st.session_state:
    st.session_state.recovered_runs = ui.registry().recover_interrupted()

navigation = st.navigation([
    st.Page("pages/home.py", title="Home", icon="🏠", url_path="start", default=True),
    st.Page("pages/training.py", title="Training runs", icon="🏋️", url_path="training-runs"),
    st.Page("pages/compare.py", title="Compare models", icon="📊", url_path="compare-models"),
    st.Page("pages/heatmaps.py", title="Heatmap viewer", icon="🔥", url_path="heatmap-viewer"),
    st.Page("pages/similarity.py", title="Similar cases", icon="🔎", url_path="similar-cases"),
])
navigation.run()
