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

# Closed by default: with a login configured every visitor signs in first; a dashboard open to the network
# without one serves nothing unless it is a read-only demo.
PAGES = [  # (script, title, icon, url path): the first is the home page
    ("pages/home.py", "Home", ":material/home:", "start"),
    ("pages/training.py", "Training runs", ":material/model_training:", "training-runs"),
    ("pages/compare.py", "Compare models", ":material/bar_chart:", "compare-models"),
    ("pages/heatmaps.py", "Heatmap viewer", ":material/layers:", "heatmap-viewer"),
    ("pages/similarity.py", "Similar cases", ":material/image_search:", "similar-cases"),
]
if ui.auth_configured() and not st.user.get("is_logged_in"):
    # Every address shows the sign-in page (a shared deep link too), and nothing else is reachable.
    sign_in = [
        st.Page(ui.sign_in_page, title="Sign in", icon=":material/login:", url_path=path, default=i == 0)
        for i, (_, _, _, path) in enumerate(PAGES)
    ]
    st.navigation(sign_in, position="hidden").run()
    st.stop()
if ui.exposed() and not ui.auth_configured() and not access.read_only():
    st.error(
        f"This dashboard listens on {st.get_option('server.address') or 'every network interface'} without a login, "
        "so it serves nothing. Configure a login in .streamlit/secrets.toml ([auth], see the README), set "
        "AW_READ_ONLY=1 for a look-only demo, or start it on this machine only (AW_HOST=127.0.0.1).",
        icon=":material/lock:",
    )
    st.stop()
who, role = ui.session_identity()

# Once per browser session: runs whose worker died (crash, kill -9, reboot) are shown as failed, not running.
if "recovered_runs" not in st.session_state:
    with ui.friendly_errors():  # a damaged registry is a message here and on each page, not a traceback
        st.session_state.recovered_runs = ui.registry().recover_interrupted()

navigation = st.navigation(
    [
        st.Page(script, title=title, icon=icon, url_path=path, default=i == 0)
        for i, (script, title, icon, path) in enumerate(PAGES)
    ]
)
if who:
    st.sidebar.caption(f"Signed in as **{who}** ({role})")
    st.sidebar.button("Log out", key="logout", icon=":material/logout:", on_click=st.logout)
with access.acting_as(who, role):
    if access.read_only():
        st.sidebar.info(
            "Read-only: look at every run, chart and image; nothing can be changed here."
            + (" Your account has the viewer role." if role == access.VIEWER else ""),
            icon=":material/lock:",
        )
    # Writes (launch, import, delete, feedback) are attributed to the signed-in user in the audit log.
    with ui.friendly_errors():
        navigation.run()  # the last guard: anything a page did not expect is one line on screen, its traceback logged
