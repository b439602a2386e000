"""Anomaly Workbench — the entry point: page config, navigation, and recovery of interrupted runs.

Start it with ``python app.py [streamlit options]`` (what ``make run`` does); ``streamlit run app.py`` works too.

Why: a ``pages/`` folder next to the main script makes Streamlit treat the app as a legacy multipage app
until ``st.navigation`` has run once in the server process (and in every ``AppTest`` run). Under
``streamlit run``, the first request after the server starts is handled that way, so a deep link such as
/compare-models shows "Page not found" once before the right page. ``python app.py`` marks the app as an
``st.navigation`` app before the server starts. The url_paths still differ from the file names so that even
that first legacy run never executes a page on its own, skipping this script: no legacy page name matches,
Streamlit falls back to this script, and ``st.navigation`` below picks the page.
"""

import os
import sys
from pathlib import Path

# Set before torch loads: sleeping (not spinning) OpenMP threads keep a 2-core machine responsive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st

if __name__ == "__main__" and not st.runtime.exists():  # `python app.py`: start the server serving this file
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False  # see the module docstring
    sys.argv = ["streamlit", "run", __file__, *sys.argv[1:]]
    sys.exit(cli.main())

from core.models import REGISTRY  # noqa: E402
from core.store import access  # noqa: E402
from pages import ui  # noqa: E402

st.set_page_config(
    page_title="Anomaly Workbench",
    page_icon=str(Path(__file__).parent / "assets" / "favicon.png"),
    layout="wide",
    menu_items={
        "About": "Anomaly Workbench: train, compare, inspect and demo visual anomaly detection "
        f"(anomalib's {', '.join(e.label for e in REGISTRY.values())}) on MVTec AD and your own images."
    },
)

# Once per browser session: runs whose worker died (crash, kill -9, reboot) are shown as failed, not running.
if "recovered_runs" not in st.session_state:
    with ui.friendly_errors():  # a damaged registry is a message here and on each page, not a traceback
        st.session_state.recovered_runs = ui.registry().recover_interrupted()

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="start", default=True),
        st.Page("pages/training.py", title="Training runs", icon=":material/model_training:", url_path="training-runs"),
        st.Page("pages/compare.py", title="Compare models", icon=":material/bar_chart:", url_path="compare-models"),
        st.Page("pages/heatmaps.py", title="Heatmap viewer", icon=":material/layers:", url_path="heatmap-viewer"),
        st.Page("pages/similarity.py", title="Similar cases", icon=":material/image_search:", url_path="similar-cases"),
    ]
)
if access.read_only():
    st.sidebar.info(
        "Read-only demo: look at every run, chart and image; nothing can be changed.", icon=":material/lock:"
    )
# Writes (launch, import, delete, feedback) are attributed to the signed-in user in the audit log, where there is one.
with access.acting_as(st.user.get("email") if st.user.get("is_logged_in") else None), ui.friendly_errors():
    navigation.run()  # the last guard: anything a page did not expect is one line on screen, its traceback logged
