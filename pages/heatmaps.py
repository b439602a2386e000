"""Heatmap viewer: where each model looks, on the test set, next to a second model, and on your own images.

A thin view: filtering/outcomes/uploads live in ``core.views.viewer``, pictures in ``core.views.overlays``. Test-set
pictures come from the run's stored maps, so browsing never reruns a model; only uploads are scored live
(through the run's cached model).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.views import overlays, viewer
from core.views.viewer import OUTCOME_HELP, OUTCOMES
from pages import ui

CARD_SIDE = 384  # cards are ~300 px wide on screen; the detail view uses overlays.DISPLAY_MAX_SIDE
GRID_COLUMNS = 4
SORT_LABELS = {"desc": "Score: high → low", "asc": "Score: low → high", "index": "Test-set order"}


# ---------------------------------------------------------------------------------------------- helpers


@st.cache_data(max_entries=512, show_spinner=False)
def _photo(path: str, mtime: float, max_side: int):
    # mtime is only part of the key: a replaced file is read again.
    return viewer.load_display_image(path, max_side)


def photo(path: str, max_side: int):
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = -1.0
    return _photo(path, mtime, max_side)


def record_picture(rec, maps, masks, cfg: viewer.DisplaySettings, opacity: float, max_side: int):
    """(composed picture, plain photo or None, message or None) for one stored test record."""
    pos = int(rec["index"])
    image, problem = photo(rec["path"], max_side)
    shape = image.shape[:2] if image is not None else overlays.display_size(*maps[pos].shape, max_side)
    picture = overlays.compose(
        image,
        maps[pos],
        viewer.gt_mask(rec, masks[pos], shape),
        cfg.pixel_threshold,
        opacity,
        *cfg.map_range,
        max_side=max_side,
    )
    return picture, image, problem


def score_line(score: float | None, threshold: float | None) -> str:
    if score is None:
        return "score –"
    if threshold is None:
        return f"score **{ui.fmt(score)}**"
    side = "≥" if score >= threshold else "<"
    return f"score **{ui.fmt(score)}** {side} threshold {ui.fmt(threshold)}"


def legend(cfg: viewer.DisplaySettings) -> None:
    lo, hi = cfg.map_range
    cols = st.columns([1, 3])
    cols[0].image(overlays.colorbar(240, 14), width=240)
    pred = (
        f"magenta outline: predicted defect (map ≥ pixel threshold {ui.fmt(cfg.pixel_threshold)})"
        if cfg.pixel_threshold is not None
        else "no pixel threshold for this run, so no predicted outline"
    )
    cols[1].caption(
        f"Colour scale fixed for the whole run: blue ≤ {ui.fmt(lo)} … red ≥ {ui.fmt(hi)} (raw map "
        f"values), so images are comparable. Green outline: ground-truth defect; {pred}."
    )


def _focus(run_id: str, pos: int) -> None:
    # Runs before the rerun, so the compare tab's image picker can still be set.
    st.session_state[f"hm_cmp_image_{run_id}"] = pos
    # The detail stays open across reruns (its feedback buttons rerun the page) until the user closes it.
    st.session_state["hm_detail_open"] = (run_id, pos)


def _close_detail() -> None:
    st.session_state.pop("hm_detail_open", None)


# ---------------------------------------------------------------------------------------------- detail


@st.dialog("Image detail", width="large", on_dismiss=_close_detail)
def detail(run, rec, maps, masks, cfg: viewer.DisplaySettings, opacity: float) -> None:
    picture, image, problem = record_picture(rec, maps, masks, cfg, opacity, overlays.DISPLAY_MAX_SIDE)
    name = Path(rec["path"]).name
    if image is not None:
        st.image(overlays.side_by_side(image, picture), caption=f"{name}: original | overlay", width="stretch")
    else:
        st.warning(problem)
        st.image(picture, caption=f"{name}: heat map only", width="stretch")
    c = st.columns(3)
    c[0].metric(
        "Anomaly score",
        ui.fmt(float(rec["score"])),
        delta=None if cfg.image_threshold is None else f"{float(rec['score']) - cfg.image_threshold:+.3f} vs threshold",
        delta_color="inverse",
    )
    c[1].metric("Verdict", viewer.verdict_text(rec["flagged"]))
    c[2].metric("Outcome", rec["outcome"] or "–", help=OUTCOME_HELP.get(rec["outcome"], "needs an image threshold"))
    st.markdown(
        f"True label: **{viewer.truth_text(rec['label'], rec['defect_type'])}** · "
        f"image threshold {ui.fmt(cfg.image_threshold)} · run {run.id}"
    )
    st.caption(viewer.original_name(rec))
    st.download_button(
        "Download overlay (PNG)",
        overlays.to_png_bytes(picture),
        file_name=f"{Path(name).stem}_overlay.png",
        mime="image/png",
        key="hm_detail_png",
    )
    why_flagged(run, rec["path"], name, "hm_fb", truth=(int(rec["label"]), str(rec["defect_type"])))


# ---------------------------------------------------------------------------------------------- why flagged, correct


@ui.as_session_user
def _feedback_action(action: str, run_id: str, image, name: str, key: str) -> None:
    """Button callbacks: the change happens in core; the page shows the result line (and any warning)."""
    from core.engine import feedback
    from core.jobs.feedback import retrain_with_feedback

    run_dir = ui.registry().run_dir(run_id)
    note = st.session_state.get(f"{key}_note", "")
    warning = None
    try:
        if action == "normal":
            result = feedback.mark_normal(run_dir, image, note=note, name=name)
            msg, warning = result.message, result.warning
        elif action == "defect":
            defect = st.session_state.get(f"{key}_type", "")
            msg = feedback.mark_defect(run_dir, image, defect, note=note, name=name).message
        elif action == "retrain":
            new = retrain_with_feedback(run_id)
            msg = f"Queued run {new.id}: the same model and settings, trained with the images marked normal."
        else:
            msg = f"Back at v{feedback.undo(run_dir).version}; the undone version is kept."
        st.session_state[f"{key}_result"] = ("success", msg, warning)
    except Exception as exc:  # noqa: BLE001 - the guard of this page action
        st.session_state[f"{key}_result"] = ("error", ui.user_message(exc, f"feedback ({action})"), None)
    st.session_state.pop("hm_version", None)  # the page's version picker shows the (new) current version


def viewed_version(run) -> int:
    """The version the page's picker shows. Read from the session, not passed down: the Inspect dialog reruns
    alone (a dialog is a fragment), and after a correction it must show the new version without a page rerun."""
    return st.session_state.get("hm_version") or ui.current_version(run)


def why_flagged(run, image, name: str, key: str, truth: tuple[int, str] | None = None) -> None:
    """Why this verdict (the hottest patch next to its closest normal, or the hottest regions), correct it, and
    the honest before/after. ``image``: a test image's path or an upload's RGB array; ``truth``: its label."""
    from core.engine.explain import explain, has_bank
    from core.engine.feedback import compare_versions, defect_warning
    from core.jobs.feedback import accepted_normals
    from core.store.versions import RunVersions
    from core.views import feedback as fb_view

    st.subheader("Why flagged")
    version = viewed_version(run)
    run_dir = ui.registry().run_dir(run.id)
    store = RunVersions(run_dir)
    model = why = None
    with ui.friendly_errors():
        model = ui.version_model(run, version)
        why = explain(model, image, name=name, nearest_image=True)
    if why is None:
        return
    st.markdown(fb_view.why_text(why) + f" Score with v{version}: **{ui.fmt(why.score)}**.")
    if why.nearest is not None:
        c = st.columns(2)
        c[0].image(why.hot.crop, caption=f"This image: hottest patch, box {why.hot.box}", width="stretch")
        c[1].image(why.nearest.crop, caption=fb_view.nearest_caption(why), width="stretch")
    else:
        for col, region in zip(st.columns(len(why.regions) or 1), why.regions, strict=False):
            col.image(region.crop, caption=f"map {ui.fmt(region.score)} · box {region.box}", width="stretch")
        if why.nearest_image:
            st.caption(f"Nearest normal training image: {Path(why.nearest_image['path']).name}")
    for note in why.notes:
        st.caption(note)

    if ui.can_write():
        if truth is not None and int(truth[0]) == 1:
            st.warning(defect_warning(truth[1]), icon=":material/warning:")
        st.text_input("Note (kept with the feedback)", key=f"{key}_note", placeholder="e.g. glare, not a defect")
        c = st.columns([2, 2, 2, 2])
        args = (run.id, image, name, key)
        c[0].button("Mark as normal", key=f"{key}_normal", on_click=_feedback_action, args=("normal", *args))
        c[1].text_input("Defect type", key=f"{key}_type", label_visibility="collapsed", placeholder="defect type")
        c[2].button("Mark as defect", key=f"{key}_defect", on_click=_feedback_action, args=("defect", *args))
        parent = store.get().parent
        c[3].button(
            f"Undo (back to v{parent})" if parent else "Undo",
            key=f"{key}_undo",
            disabled=parent is None,
            on_click=_feedback_action,
            args=("undo", *args),
        )
        normals = [] if has_bank(model) else accepted_normals(run.id)
        if normals:
            st.button(
                f"Retrain with feedback ({len(normals)} image(s) marked normal)",
                key=f"{key}_retrain",
                icon=":material/replay:",
                help=f"{model.model_name} has no memory bank to add them to: queue a run with the same model, "
                "settings and seed whose training set includes them (they leave its test set).",
                on_click=_feedback_action,
                args=("retrain", *args),
            )
    kind, msg, warning = st.session_state.pop(f"{key}_result", (None, None, None))
    if kind:
        getattr(st, kind)(msg)
    if warning:
        st.warning(warning, icon=":material/warning:")
    chosen = store.get(version)
    if chosen.parent is not None:
        with ui.friendly_errors():
            table = compare_versions(run_dir, chosen.parent, chosen.version)
            st.markdown(
                f"**Before / after** on the same {table['n_images']} test images (feedback images left out), "
                f"threshold {ui.fmt(table['threshold'])}:"
            )
            st.dataframe(fb_view.before_after_frame(table), hide_index=True)


# ---------------------------------------------------------------------------------------------- tabs


def images_tab(run, records, maps, masks, cfg: viewer.DisplaySettings, opacity: float) -> None:
    thr = cfg.image_threshold
    c = st.columns([2, 2, 3, 2])
    label = c[0].radio("True label", viewer.LABELS, format_func=str.capitalize, horizontal=True, key="hm_label")
    types = c[1].multiselect(
        "Defect type", sorted(records["defect_type"].unique()), key=f"hm_types_{run.id}", placeholder="All types"
    )
    outs = c[2].multiselect(
        "Outcome at the image threshold",
        OUTCOMES,
        key="hm_outcomes",
        placeholder="All",
        format_func=lambda o: f"{o}: {OUTCOME_HELP[o]}",
        disabled=thr is None,
        help="Needs the run's image threshold." if thr is None else None,
    )
    order = c[3].selectbox("Sort", viewer.SORTS, format_func=SORT_LABELS.get, key="hm_sort")

    counts = viewer.with_outcomes(records, thr)["outcome"].value_counts()
    if thr is not None:
        st.caption(f"At image threshold {ui.fmt(thr)}: " + " · ".join(f"{o} {int(counts.get(o, 0))}" for o in OUTCOMES))

    view = viewer.select(records, thr, label, types, outs if thr is not None else None, order)
    if view.empty:
        st.info("No test image matches these filters. Widen the label, defect type or outcome filter.")
        return

    p = st.columns([1, 1, 4])
    per_page = p[0].selectbox("Per page", [12, 24, 48], key="hm_per_page")
    pages = viewer.n_pages(len(view), per_page)
    if st.session_state.get("hm_page", 1) > pages:  # filters shrank the list: back to the first page
        st.session_state["hm_page"] = 1
    page = p[1].number_input("Page", min_value=1, max_value=pages, step=1, key="hm_page")
    rows, page = viewer.paginate(view, page, per_page)
    first = (page - 1) * per_page + 1
    p[2].caption(f"Showing {first}–{first + len(rows) - 1} of {len(view)} images (of {len(records)} in the test set)")

    missing = 0
    for start in range(0, len(rows), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, (_, rec) in zip(cols, rows.iloc[start : start + GRID_COLUMNS].iterrows(), strict=False):
            picture, image, _ = record_picture(rec, maps, masks, cfg, opacity, CARD_SIDE)
            missing += image is None
            with col.container(border=True):
                st.image(picture, width="stretch")
                outcome = f" · **{rec['outcome']}**" if rec["outcome"] else ""
                st.markdown(
                    f"{score_line(float(rec['score']), thr)}  \n"
                    f"Verdict: **{viewer.verdict_text(rec['flagged'])}**{outcome}"
                )
                st.caption(f"Truth: {viewer.truth_text(rec['label'], rec['defect_type'])} · {Path(rec['path']).name}")
                pos = int(rec["index"])
                st.button(
                    "Inspect",
                    key=f"hm_inspect_{pos}",
                    icon=":material/zoom_in:",
                    width="stretch",
                    on_click=_focus,
                    args=(run.id, pos),
                )
    if missing:
        st.warning(
            f"{missing} test image(s) on this page could not be read (moved or deleted?); they show the "
            "heat map without the photo."
        )
    open_run, open_pos = st.session_state.get("hm_detail_open") or (None, None)
    if open_run == run.id:
        shown = viewer.with_outcomes(records, thr)
        shown = shown[shown["index"] == open_pos]
        if shown.empty:  # the run's test set changed since
            _close_detail()
        else:
            detail(run, shown.iloc[0], maps, masks, cfg, opacity)


def compare_tab(run, runs, records, maps, masks, cfg: viewer.DisplaySettings, opacity: float) -> None:
    others = viewer.comparable_runs(run, runs)
    if not others:
        st.info(
            f"No other finished run was tested on **{run.category}** ({run.dataset.get('kind', '?')}). Train a "
            "second model on the same dataset to compare both on the same image."
        )
        st.page_link("pages/training.py", label="Go to Training runs", icon=":material/model_training:")
        return
    other = ui.pick_run("Second run (same test images)", key="hm_other", runs=others)
    if other is None:
        return
    o_records = None
    with ui.friendly_errors():
        o_records, o_maps, o_masks = ui.run_records(other)
        o_cfg = viewer.display_settings(ui.registry().run_dir(other.id))
    if o_records is None:
        return
    positions = list(range(len(records)))
    key = f"hm_cmp_image_{run.id}"
    if st.session_state.get(key, 0) not in positions:
        st.session_state[key] = 0
    pos = st.selectbox(
        "Test image",
        positions,
        key=key,
        format_func=lambda i: (
            f"{records.iloc[i]['defect_type']}/{Path(records.iloc[i]['path']).name} · "
            f"score {ui.fmt(float(records.iloc[i]['score']))}"
        ),
        help="The Inspect button on a card also picks the image here.",
    )
    rec = records.iloc[pos]
    o_pos = viewer.find_by_path(o_records, rec["path"])
    if o_pos is None:
        st.warning("The second run has no record for this image (its test set changed since). Pick another image.")
        return
    st.caption(
        "Each run is drawn in its own colour scale and with its own thresholds: raw scores of different "
        "models are not comparable, so compare verdicts and how far each score is from its threshold."
    )
    for col, (r, rc, mp, mk, cf) in zip(
        st.columns(2),
        ((run, rec, maps, masks, cfg), (other, o_records.iloc[o_pos], o_maps, o_masks, o_cfg)),
        strict=False,
    ):
        with col.container(border=True):
            st.markdown(f"**{ui.run_label(r)}**")
            picture, image, problem = record_picture(rc, mp, mk, cf, opacity, overlays.DISPLAY_MAX_SIDE)
            if problem:
                st.warning(problem)
            st.image(picture, width="stretch")
            score, thr = float(rc["score"]), cf.image_threshold
            flagged = None if thr is None else score >= thr
            ratio = f" ({score / thr:.2f}× threshold)" if thr not in (None, 0) else ""
            st.markdown(f"{score_line(score, thr)}{ratio}  \nVerdict: **{viewer.verdict_text(flagged)}**")
    st.caption(f"Ground truth: {viewer.truth_text(rec['label'], rec['defect_type'])} · {viewer.original_name(rec)}")


def _why_upload(name: str) -> None:
    st.session_state["hm_upload_why"] = name


def upload_tab(run, version: int, cfg: viewer.DisplaySettings, opacity: float) -> None:
    st.caption(
        "Score images that are not in the test set with this run's model. Files stay in this browser session; "
        "only an image you mark as normal or defective is kept (in the run's folder, with the feedback)."
    )
    files = st.file_uploader("Images to score", type=viewer.UPLOAD_TYPES, accept_multiple_files=True, key="hm_upload")
    if not files:
        return
    model = None
    with ui.friendly_errors():
        # The current version: the OpenVINO export when the run has a valid one; another version: its torch model.
        model = ui.fastest_model(run) if version == ui.current_version(run) else ui.version_model(run, version)
    if model is None:
        return
    # One cache per run and version, so moving the opacity slider does not rescore every upload; other runs' caches go.
    cache_key = f"hm_upload_cache_{run.id}_v{version}"
    for key in [k for k in st.session_state if str(k).startswith("hm_upload_cache_") and k != cache_key]:
        del st.session_state[key]
    cache = st.session_state.setdefault(cache_key, {})
    with st.spinner(f"Scoring {len(files)} image(s)…"):
        preds = viewer.score_uploads(model, [(f.name, f.getvalue()) for f in files], cache)
    for key in [k for k, v in cache.items() if not any(v is p for p in preds)]:
        del cache[key]  # forget removed uploads

    thr = cfg.image_threshold
    table = viewer.uploads_table(preds, thr)
    ok = [p for p in preds if p.error is None]
    flagged = sum(bool(p.is_anomalous) for p in ok)
    st.markdown(
        f"**{len(ok)}** of {len(preds)} image(s) scored · **{flagged}** flagged anomalous"
        + ("" if thr is not None else " (this run has no image threshold, so no verdicts)")
    )
    for p in preds:
        if p.error:
            st.error(p.error, icon=":material/block:")
    st.download_button(
        "Download results (CSV)",
        viewer.table_csv(table),
        file_name=f"scores_{run.id}.csv",
        mime="text/csv",
        key="hm_upload_csv",
    )
    for start in range(0, len(ok), GRID_COLUMNS):
        for col, p in zip(st.columns(GRID_COLUMNS), ok[start : start + GRID_COLUMNS], strict=False):
            picture = overlays.compose(
                p.image, p.anomaly_map, None, cfg.pixel_threshold, opacity, *cfg.map_range, max_side=CARD_SIDE
            )
            with col.container(border=True):
                st.image(picture, width="stretch")
                st.markdown(f"{score_line(p.score, thr)}  \nVerdict: **{viewer.verdict_text(p.is_anomalous)}**")
                st.caption(p.name)
                st.button(
                    "Why flagged",
                    key=f"hm_upload_why_{p.name}",
                    icon=":material/help:",
                    width="stretch",
                    on_click=_why_upload,
                    args=(p.name,),
                )
    chosen = next((p for p in ok if p.name == st.session_state.get("hm_upload_why")), None)
    if chosen is not None:
        with st.container(border=True):
            st.markdown(f"**{chosen.name}** (your upload)")
            why_flagged(run, chosen.image, chosen.name, "hm_up_fb")


# ---------------------------------------------------------------------------------------------- page


st.title("Heatmap viewer")
st.caption(
    "Where does the model see a defect? Anomaly maps over the test images, two runs on the same image, "
    "and your own images scored by a run's model."
)

runs = ui.finished_runs()
run = ui.open_run("hm_run", runs=runs)
version = ui.pick_version(run, "hm_version")
records, maps, masks, cfg = ui.open_records(run)

opacity = st.slider(
    "Heat-map opacity",
    0.0,
    1.0,
    0.5,
    0.05,
    key="hm_opacity",
    help="0 shows the photo only, 1 the colour map only. Applies to every picture on this page.",
)
legend(cfg)

tab_test, tab_compare, tab_upload = st.tabs(["Test images", "Compare two runs", "Score your own images"])
with tab_test:
    images_tab(run, records, maps, masks, cfg, opacity)
with tab_compare:
    compare_tab(run, runs, records, maps, masks, cfg, opacity)
with tab_upload:
    upload_tab(run, version, cfg, opacity)
