"""Compare models: quality metrics, speed, curves and score distributions of finished runs side by side,
a threshold what-if for one run, and exports (CSV table, self-contained HTML report).

A thin view: numbers come from ``core.views.comparison``, figures from ``core.views.charts``, the report from
``core.views.report``. Everything is read from stored run artifacts; a model runs only for a corrected run's
before/after (once per version: its scores are kept) and when the user asks for a detection limit.
"""

import math
from pathlib import Path

import streamlit as st

from core.engine.limit import POINT_LABELS, detection_limit
from core.errors import WorkbenchError
from core.jobs import sweep
from core.store.artifacts import RunArtifacts
from core.store.versions import RunVersions
from core.views import charts, comparison, trust
from core.views import feedback as fb_view
from core.views import sweep as sweep_view
from core.views.report import build_html_report
from pages import ui

st.title("Compare models")

runs = ui.finished_runs()
if not runs:
    st.info(
        "No finished runs to compare yet. Train one on **Training runs** (the demo dataset takes a minute "
        "or two); finished runs appear here automatically."
    )
    st.page_link("pages/training.py", label="Go to Training runs", icon=":material/model_training:")
    for group in sweep.sweeps():  # a sweep under way: say so, its charts come with its first finished run
        st.caption(
            f":material/tune: Sweep **{group['id']}** ({group['model']} on {group['dataset']}, {group['swept']}): "
            f"{group['done']}/{group['points']} runs done — charted under *Sweeps* here as they finish."
        )
    st.stop()

by_id = {r.id: r for r in runs}
if "cmp_runs" not in st.session_state:
    st.session_state.cmp_runs = comparison.default_selection(runs)
focus = ui.take_focus("cmp_runs")
if focus in by_id:  # opened from a run (Home, History): compare it with the defaults
    st.session_state.cmp_runs = list(dict.fromkeys([focus, *comparison.default_selection(runs)]))
st.session_state.cmp_runs = [i for i in st.session_state.cmp_runs if i in by_id]  # deleted since
chosen = st.multiselect(
    "Runs to compare",
    list(by_id),
    format_func=lambda i: ui.run_label(by_id[i]),
    key="cmp_runs",
    help="Defaults to the latest finished run of each model on each category.",
)
if not chosen:
    st.info("Pick at least one run above to see its metrics.")
    st.stop()
selected = [by_id[i] for i in chosen]

# Pipeline-check runs (e.g. an untrained EfficientAD teacher) must never pass for results.
for run in selected:
    for warning in comparison.run_warnings(run):
        st.warning(f"**{run.id}**: {warning}", icon=":material/warning:")

table = comparison.comparison_table(selected)
averages = comparison.averages_table(selected)
several_categories = table["category"].nunique() > 1

METRIC_FORMAT = {key: st.column_config.NumberColumn(label, format="%.3f") for key, label in comparison.METRICS.items()}
TABLE_CONFIG = {
    "run_id": st.column_config.TextColumn("run"),
    "series": st.column_config.TextColumn("model setup"),
    **METRIC_FORMAT,
    "fpr_at_full_recall": st.column_config.NumberColumn(
        "overkill at 0 escapes",
        format="percent",
        help="Share of normal images flagged when the threshold is as high as it can be without missing a defect",
    ),
    "fit_s": st.column_config.NumberColumn("fit s", format="%.1f"),
    "e2e_ms_p50": st.column_config.NumberColumn("e2e ms p50", format="%.1f"),
    "e2e_ms_p95": st.column_config.NumberColumn("e2e ms p95", format="%.1f"),
    "images_per_s_b1": st.column_config.NumberColumn("img/s b1", format="%.2f"),
    "images_per_s_best": st.column_config.NumberColumn("img/s best", format="%.2f"),
}
SHOWN_COLUMNS = [
    "run_id",
    "series",
    "category",
    *comparison.METRICS,
    "fpr_at_full_recall",
    "fit_s",
    "e2e_ms_p50",
    "e2e_ms_p95",
    "images_per_s_b1",
    "images_per_s_best",
]

quality, speed, curves_tab, whatif, export, sweeps_tab = st.tabs(
    ["Quality", "Speed", "Curves & scores", "Threshold what-if", "Export", "Sweeps"]
)

# ---- quality -----------------------------------------------------------------------------------------------
with quality:
    show_refs = st.toggle(
        "Show published reference numbers",
        value=True,
        key="cmp_refs",
        help="Numbers from the papers and anomalib's READMEs for the models compared, for orientation. "
        "They are published, not measured here.",
    )
    refs = comparison.reference_table(set(table["category"]), comparison.model_labels(selected)) if show_refs else None
    note = comparison.backbone_note(selected, refs)
    if note:
        st.info(note, icon=":material/info:")
    # With one category the average equals that category: no need for a second, identical bar.
    long = comparison.metrics_long(table, averages if several_categories else None, refs)
    st.plotly_chart(charts.metric_bars(long), width="stretch", key="cmp_metric_bars")
    st.dataframe(table[SHOWN_COLUMNS], hide_index=True, width="stretch", column_config=TABLE_CONFIG)
    st.caption(
        "Image F1 is at anomalib's adaptive threshold, picked on the test set itself (optimistic). "
        "Try fixed thresholds under **Threshold what-if**."
    )
    if several_categories:
        st.markdown("**Average across categories** (each category once per model setup)")
        st.dataframe(averages, hide_index=True, width="stretch", column_config=METRIC_FORMAT)
    if show_refs:
        st.markdown(f"**Reference numbers — {comparison.PUBLISHED}**")
        all_refs = comparison.reference_table(models=comparison.model_labels(selected))
        if all_refs.empty:
            st.caption("No published numbers are stored for the models compared here.")
        else:
            # Only metrics some source publishes, and "–" (not Streamlit's "None") where one source doesn't.
            shown_refs = all_refs.drop(columns=["series"]).dropna(axis="columns", how="all")
            for key in comparison.METRICS:
                if key in shown_refs:
                    shown_refs[key] = shown_refs[key].map(lambda v: "–" if v != v else f"{v:.3f}")
            st.dataframe(shown_refs.rename(columns=comparison.METRICS), hide_index=True, width="stretch")
            if refs is None or refs.empty:
                st.caption(
                    "None of them is for the categories compared here, so the chart shows none. "
                    f"Published numbers exist for: {', '.join(sorted(set(all_refs['category'])))}."
                )
    per_defect = comparison.per_defect_table(selected)
    st.plotly_chart(
        charts.per_defect_bars(per_defect, title="Detection rate per defect type (each run at its adaptive threshold)"),
        width="stretch",
        key="cmp_per_defect",
    )

# ---- speed -------------------------------------------------------------------------------------------------
with speed:
    lat = comparison.latency_table(selected)
    st.plotly_chart(charts.latency_bars(lat), width="stretch", key="cmp_latency")
    st.caption(
        "End-to-end = decode + pre-process + model + post-process for one image, timed after warm-up. "
        "Paths: stock anomalib, this workbench's path ('ours') and OpenVINO, where a run was timed on them."
    )
    cpus = {f"{r.environment.get('cpu', '?')} · {r.environment.get('torch_threads', '?')} threads" for r in selected}
    st.caption("Timed on: " + "; ".join(sorted(cpus)) + ". Compare speeds only between runs timed on the same machine.")
    st.plotly_chart(charts.fit_time_bars(table), width="stretch", key="cmp_fit_time")

# ---- curves and score distributions ------------------------------------------------------------------------
with curves_tab:
    stored_curves = {}
    for run in selected:
        stored_curves[f"{comparison.config_label(run)} · {run.id}"] = RunArtifacts(
            ui.registry().run_dir(run.id)
        ).curves()
    st.plotly_chart(charts.roc_pr_curves(stored_curves), width="stretch", key="cmp_roc_pr")
    st.markdown("**Score distributions** (normal vs anomalous test images, each run at its adaptive threshold)")
    columns = st.columns(2)
    for i, run in enumerate(selected):
        with columns[i % 2], ui.friendly_errors():
            records, _, _ = ui.run_records(run)
            st.plotly_chart(
                charts.score_histogram(
                    comparison.score_split(records),
                    run.metrics.get("image_threshold"),
                    title=f"{comparison.config_label(run)}<br><sup>{run.id} · {run.category}</sup>",
                    threshold_label="adaptive",
                ),
                width="stretch",
                key=f"cmp_hist_{run.id}",
            )


# ---- threshold what-if -------------------------------------------------------------------------------------
def _set_threshold(key: str, value: float) -> None:
    st.session_state[key] = value  # in a callback, so it lands before the slider is built


def _decimals(lo: float, hi: float) -> int:
    """Enough decimals on the slider label to tell ~1/1000 of the score range apart."""
    return max(0, min(8, 3 - math.floor(math.log10(hi - lo)))) if hi > lo else 3


@st.fragment
def threshold_whatif(run_ids: list[str]) -> None:
    """Everything here reruns on its own when the slider moves: counting over stored scores only."""
    run_id = st.selectbox("Run", run_ids, format_func=lambda i: ui.run_label(by_id[i]), key="cmp_thr_run")
    run = by_id[run_id]
    try:
        records, _, _ = ui.run_records(run)
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    lo, hi = comparison.slider_range(records)
    key = f"cmp_thr_{run.id}"  # one remembered threshold per run
    adaptive = run.metrics.get("image_threshold")
    if key not in st.session_state:
        st.session_state[key] = min(hi, max(lo, adaptive)) if adaptive is not None else (lo + hi) / 2
    else:  # a remembered threshold outside a (re-tested) run's score range would be rejected by the slider
        st.session_state[key] = min(hi, max(lo, st.session_state[key]))
    zero = comparison.zero_escapes(records)

    left, right = st.columns([3, 1])
    with right:
        st.button(
            "Zero escapes",
            key=f"cmp_zero_{run.id}",
            type="primary",
            disabled=zero is None,
            on_click=_set_threshold,
            args=(key, zero),
            width="stretch",
            help="Set the threshold to the lowest anomalous score: no defect is missed.",
        )
        if zero is not None:
            at_zero = comparison.threshold_panel(records, zero).view
            st.caption(
                f"At zero escapes (threshold {zero:.4g}) the overkill rate is "
                f"**{(at_zero['fpr'] or 0):.1%}** ({at_zero['fp']} of {at_zero['fp'] + at_zero['tn']} "
                "normal images flagged)."
            )
        if adaptive is not None:
            st.button(
                "Adaptive (best F1)",
                key=f"cmp_adaptive_{run.id}",
                on_click=_set_threshold,
                args=(key, min(hi, max(lo, adaptive))),
                width="stretch",
                help="anomalib's F1-optimal threshold on the test set (what the metrics table uses).",
            )
    with left:
        threshold = st.slider(
            "Threshold (anomaly score; score ≥ threshold = anomalous)",
            min_value=lo,
            max_value=hi,
            step=(hi - lo) / 200,
            key=key,
            format=f"%.{_decimals(lo, hi)}f",
        )
    panel = comparison.threshold_panel(records, threshold)
    view = panel.view

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Misses (escapes)", view["fn"], help="Anomalous images scored below the threshold")
    c2.metric("False positives", view["fp"], help="Normal images flagged (overkill)")
    c3.metric("Overkill rate", "–" if view["fpr"] is None else f"{view['fpr']:.1%}")
    c4.metric("Recall", "–" if view["recall"] is None else f"{view['recall']:.1%}")
    st.plotly_chart(
        charts.score_histogram(
            comparison.score_split(records), threshold, title=f"Scores of {run.id} at the chosen threshold"
        ),
        width="stretch",
        key="cmp_thr_hist",
    )
    a, b = st.columns(2)
    with a:
        st.markdown("**Confusion matrix**")
        st.dataframe(panel.confusion, width="stretch")
    with b:
        st.markdown("**Per defect type**")
        st.dataframe(
            panel.per_defect,
            hide_index=True,
            width="stretch",
            column_config={"recall": st.column_config.NumberColumn("recall", format="percent")},
        )
    a, b = st.columns(2)
    with a:
        st.markdown(f"**False positives** ({len(panel.false_positives)})")
        st.dataframe(panel.false_positives, hide_index=True, width="stretch")
    with b:
        st.markdown(f"**Misses** ({len(panel.misses)})")
        st.dataframe(panel.misses, hide_index=True, width="stretch")


with whatif:
    st.caption(
        "Move the threshold to see what a fixed line-side setting would do. Recomputed from the stored "
        "test scores; the model is not rerun."
    )
    threshold_whatif(chosen)

# ---- export ------------------------------------------------------------------------------------------------
with export:
    st.download_button(
        "Download comparison table (CSV)",
        data=comparison.table_csv(table),
        file_name="comparison.csv",
        mime="text/csv",
        icon=":material/table_view:",
        key="cmp_csv",
    )
    n_maps = st.number_input(
        "Heatmaps per run in the report", min_value=0, max_value=8, value=3, step=1, key="cmp_report_maps"
    )

    def _report() -> str:
        # Built only when the button is clicked (deferred): reading maps and images costs a second or two.
        return build_html_report(selected, ui.registry(), heatmaps_per_run=int(n_maps), include_references=show_refs)

    st.download_button(
        "Download HTML report",
        data=_report,
        file_name="comparison_report.html",
        mime="text/html",
        icon=":material/description:",
        key="cmp_html",
        help="One self-contained file (charts, tables, parameters, warnings, heatmaps) that opens "
        "offline in any browser.",
    )
    st.caption(
        "The report holds the charts above, the metric and reference tables, each run's parameters, "
        "environment and warnings, and a few heatmaps per run."
    )

# ---- detection limit ---------------------------------------------------------------------------------------
st.subheader("Detection limit")
st.caption(
    "Synthetic scratches, spots and stains of controlled size and contrast, pasted onto each run's held-out normal "
    "test images and scored by its model: the smallest defect it catches 95 % of the time (`aw limit RUN`)."
)
limit_summary = trust.limit_summary(selected, ui.registry())
if not limit_summary.empty:
    st.dataframe(limit_summary, hide_index=True, width="stretch", key="cmp_limit_table")
missing = [r.id for r in selected if trust.run_limit(r, ui.registry()) is None]
if missing and not ui.can_write():
    st.caption(f"Not measured yet for {', '.join(missing)}. {ui.read_only_note()}")
elif missing:
    pick, go_col = st.columns([3, 1])
    measure_id = pick.selectbox(
        "Run without a measured limit", missing, format_func=lambda i: ui.run_label(by_id[i]), key="cmp_limit_run"
    )
    if go_col.button("Measure detection limit", key="cmp_limit_go", help="About a minute per run on 2 cores"):
        with st.spinner("Pasting and scoring synthetic defects…"), ui.friendly_errors():
            detection_limit(measure_id)
            st.rerun()
measured = [(r, trust.run_limit(r, ui.registry())) for r in selected]
measured = [(r, res) for r, res in measured if res is not None]
if measured:
    point = st.radio(
        "Threshold",
        list(POINT_LABELS),
        format_func=lambda p: POINT_LABELS[p],
        horizontal=True,
        key="cmp_limit_point",
        help="Zero escapes: the lowest score of the run's real defective test images, so none of them is missed.",
    )
    for run, result in measured:
        for line in result.statements(point):
            st.markdown(f"- {line}")
        st.plotly_chart(trust.limit_figure(result, point), width="stretch", key=f"cmp_limit_fig_{run.id}")

# ---- corrected versions ------------------------------------------------------------------------------------
corrected = [r for r in selected if len(RunVersions(ui.registry().run_dir(r.id)).lineage()) > 1]
if corrected:
    from core.engine.feedback import compare_versions  # torch: only once a selected run has been corrected

    st.subheader("Corrected versions")
    st.caption(
        "Runs an engineer corrected with feedback (Heatmap viewer → Inspect → Mark as normal, or `aw feedback`). "
        "A version is compared with its parent on the same remaining test images: the feedback images leave both."
    )
    for run in corrected:
        st.markdown(f"**{ui.run_label(run)}**")
        version = ui.pick_version(run, f"cmp_version_{run.id}")
        chosen = RunVersions(ui.registry().run_dir(run.id)).get(version)
        if chosen.parent is None:
            st.caption("v1 is the trained model; pick a later version to see what its correction changed.")
            continue
        with ui.friendly_errors(), st.spinner(f"Scoring the remaining test images with v{version}…"):
            before_after = compare_versions(ui.registry().run_dir(run.id), chosen.parent, chosen.version)
            st.dataframe(fb_view.before_after_frame(before_after), hide_index=True, key=f"cmp_versions_table_{run.id}")
            st.caption(
                f"{before_after['n_images']} test images, threshold {ui.fmt(before_after['threshold'])}; "
                f"left out: {', '.join(Path(p).name for p in before_after['left_out']) or 'none'}."
            )


# ---- sweeps ------------------------------------------------------------------------------------------------
with sweeps_tab:
    groups = sweep.sweeps()
    if not groups:
        st.info(
            "No sweep yet. Training runs → Launch → *Sweep parameters* (or `aw sweep`) queues one run per combination "
            "of values; they are charted here as a group."
        )
    else:
        sweep_id = st.selectbox(
            "Sweep",
            [g["id"] for g in groups],
            key="cmp_sweep",
            format_func=lambda i: next(
                f"{g['id']} · {g['model']} on {g['dataset']} · {g['swept']} · {g['done']}/{g['points']} done"
                for g in groups
                if g["id"] == i
            ),
        )
        sweep_runs = sweep.sweep_runs(sweep_id)
        frame = sweep_view.sweep_frame(sweep_runs)
        swept = sweep_view.swept_parameters(sweep_runs)
        left, right = st.columns(2)
        axis_q = left.selectbox("Quality", list(sweep_view.QUALITY), format_func=sweep_view.QUALITY.get, key="sw_q")
        axis_c = right.selectbox("Cost", list(sweep_view.COST), format_func=sweep_view.COST.get, key="sw_c")
        st.dataframe(sweep_view.marked(frame, axis_q, axis_c), hide_index=True, key="sweep_table")
        st.markdown(sweep_view.recommend(frame, axis_q, axis_c, swept))
        st.plotly_chart(sweep_view.tradeoff_chart(frame, axis_q, axis_c, swept), width="stretch", key="sweep_front")
        for i, fig in enumerate(sweep_view.metric_charts(frame, swept)):
            st.plotly_chart(fig, width="stretch", key=f"sweep_metric_{i}")
