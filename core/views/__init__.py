"""View-models that pages and reports draw: comparison tables (``comparison``), Plotly charts (``charts``), the
heatmap viewer's logic (``viewer``) and pictures (``overlays``), the home overview (``overview``), the HTML report
(``report``). No Streamlit here: pages render what these return.

Layer 8 of core: imports ``core.jobs`` and everything below it.
"""
