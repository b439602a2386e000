"""Similar cases: the nearest images of a run to a test image or an upload, through the run's Qdrant index.

A thin view over ``core.similarity.embeddings`` (embedding + search) and ``core.views.overlays`` (pictures). The
query is embedded with the run's own cached model; test-image neighbours show their stored anomaly maps, train-image
neighbours get theirs computed on the fly (cached), since training does not store maps for them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import streamlit as st

from core.config import settings
from core.data import images
from core.errors import VectorStoreError, WorkbenchError
from core.similarity import embeddings
from core.similarity.vectorstore import VectorStore
from core.views import overlays, viewer
from pages import ui

CARD_SIDE = 320  # a card is ~250 px wide on screen
GRID_COLUMNS = 5
INDEX_VERSION = 1  # the index is built by the trained model; feedback versions change only a bank, not the index
EMBEDDINGS = {"defect": "defect-centred", "global": "global"}
EMBEDDING_HELP = (
    "Defect-centred: features of the most anomalous patches only — finds defects that look alike. "
    "Global: the whole image — finds images that look alike overall."
)
LABELS = {"any": None, "normal": "normal", "anomalous": "anomalous"}
SPLITS = {"any": None, "test": "test", "train": "train"}
ANY_TYPE = "any"
PRECISION_KS = (1, 5, 10)


# ---------------------------------------------------------------------------------------------- helpers


@st.cache_data(max_entries=512, show_spinner=False)
def _photo(path: str, mtime: float, max_side: int):
    # mtime is only part of the key: a replaced file is read again.
    return viewer.load_display_image(path, max_side)


def photo(path: str, max_side: int = CARD_SIDE):
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = -1.0
    return _photo(path, mtime, max_side)


@st.cache_data(max_entries=256, show_spinner=False)
def _fresh_map(run_dir: str, ckpt_mtime: float, path: str, _model) -> np.ndarray | None:
    """Anomaly map of an image the run has no stored map for (train images), computed once."""
    pred = _model.predict([path])[0]
    return pred.anomaly_map


@st.cache_data(max_entries=64, ttl=600, show_spinner="Searching…")
def _search(
    run_id: str,
    ckpt_mtime: float,
    store: str,
    index_stamp: str,
    query_key: str,
    _model,
    _rgb,
    using: str,
    k: int,
    label,
    defect_type,
    split,
    exclude_path,
):
    # Keyed by the image (path or upload hash), the filters, the store and the run's index stamp, so that moving
    # a display widget does not re-embed the query; a re-index through this page changes the stamp.
    return embeddings.similar(
        run_id,
        _model,
        _rgb,
        using=using,
        k=k,
        label=label,
        defect_type=defect_type,
        split=split,
        exclude_path=exclude_path,
    )


def checkpoint_mtime(run) -> float:
    ckpt = ui.registry().run_dir(run.id) / "model.safetensors"
    return ckpt.stat().st_mtime if ckpt.exists() else 0.0


def store_key() -> str:
    s = settings()
    return s.qdrant_url or str(s.qdrant_path)


def at_k(table: dict, k: int):
    # run.retrieval comes back from the registry's JSON, where the k keys became strings
    return table.get(k, table.get(str(k)))


def is_indexed(run) -> bool:
    return bool(run.retrieval.get("points"))


class ProgressHooks:
    """What ``index_run`` reports progress to, shown as a progress bar."""

    def __init__(self) -> None:
        self.bar = st.progress(0.0, text="Embedding images…")

    def progress(self, phase: str, done: int, total: int) -> None:
        self.bar.progress(min(1.0, done / max(total, 1)), text=f"Embedding images: {done}/{total}")

    def check(self) -> None:
        pass  # nothing can cancel a page-started index except leaving the page


def index_button(run, key: str) -> None:
    """'Index this run now': embed its images with its model, store them, record the precision figures."""
    if not ui.can_write():
        st.caption(ui.read_only_note())
        return
    if not st.button("Index this run now", key=key, icon=":material/database:", type="primary"):
        return
    with ui.friendly_errors():
        model = ui.version_model(run, INDEX_VERSION)
        result = embeddings.index_and_record(run.id, model, hooks=ProgressHooks(), registry=ui.registry())
        st.toast(f"Indexed {result['points']} images of run {run.id}.", icon=":material/check_circle:")
        st.rerun()


def not_indexed(run) -> None:
    reason = run.extra.get("index_error")
    st.warning(
        f"Run {run.id} has no similarity index yet"
        + (
            f": indexing failed after training ({reason})."
            if reason
            else " (it finished before indexing was part of training, or indexing was skipped)."
        )
        + " Indexing embeds its test and train images with its own model; it takes about as long as testing did.",
        icon=":material/database:",
    )
    index_button(run, key=f"sim_index_{run.id}")


def precision_table(run) -> None:
    st.subheader("How well this run's index retrieves similar cases")
    rows, measured = [], None
    for using, name in EMBEDDINGS.items():
        figures = run.retrieval.get(using) or {"error": "not measured"}
        if "error" in figures:
            st.info(f"{name.capitalize()} embedding: no precision figures ({figures['error']}).")
            continue
        measured = figures
        row = {"embedding": name}
        for what, title in (("same_label", "same label"), ("same_defect_type", "same defect type")):
            for k in PRECISION_KS:
                row[f"{title} @{k}"] = at_k(figures.get(what) or {}, k)
        rows.append(row)
    if not rows:
        return
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={c: st.column_config.NumberColumn(c, format="%.2f") for c in rows[0] if c != "embedding"},
    )
    st.caption(
        f"Each of the run's {measured.get('n', '?')} test images queries the others: precision@k is the share "
        "of its k nearest neighbours with its label (all queries) or its defect type "
        f"({measured.get('n_anomalous', '?')} defective queries); 1.00 means every neighbour matches."
    )


def short_path(path) -> str:
    """'spot/002.png': file names repeat across MVTec's defect folders, so keep the folder."""
    path = Path(str(path))
    return f"{path.parent.name}/{path.name}"


def truth_line(label, defect_type) -> str:
    if label is None:
        return "unknown"
    return viewer.truth_text(int(label), str(defect_type))


# ---------------------------------------------------------------------------------------------- query


def choose_test_image(run, records, maps, masks, dcfg, opacity):
    """(rgb, key, path, picture, caption) for a test image of the run, or None."""
    types = sorted(records["defect_type"].unique())
    c = st.columns([1, 3])
    wanted = c[0].selectbox(
        "Defect type of the query",
        [ANY_TYPE, *types],
        key=f"sim_qtype_{run.id}",
        format_func=lambda t: "all types" if t == ANY_TYPE else t,
    )
    positions = [i for i in range(len(records)) if wanted == ANY_TYPE or records.iloc[i]["defect_type"] == wanted]
    key = f"sim_image_{run.id}_{wanted}"
    if st.session_state.get(key) not in positions:  # start on a defective image: what people usually look up
        defective = [i for i in positions if int(records.iloc[i]["label"]) == 1]
        st.session_state[key] = (defective or positions)[0]
    pos = c[1].selectbox(
        "Test image",
        positions,
        key=key,
        format_func=lambda i: (
            f"{short_path(records.iloc[i]['path'])} · score {ui.fmt(float(records.iloc[i]['score']))}"
        ),
    )
    rec = records.iloc[pos]
    image, problem = photo(rec["path"], overlays.DISPLAY_MAX_SIDE)
    if image is None:
        st.error(f"{problem.split(' The heat map')[0]} Pick another image, or upload it.")
        return None
    rgb = images.read_image(rec["path"])
    picture = overlays.compose(
        image,
        maps[pos],
        viewer.gt_mask(rec, masks[pos], image.shape[:2]),
        dcfg.pixel_threshold,
        opacity,
        *dcfg.map_range,
    )
    caption = (
        f"Query: {short_path(rec['path'])} · truth {truth_line(rec['label'], rec['defect_type'])} · "
        f"score {ui.fmt(float(rec['score']))}"
    )
    return rgb, f"test:{rec['path']}", rec["path"], picture, caption


def choose_upload(run):
    """(rgb, key, None, None, caption) for an uploaded image, or None; the picture comes after scoring."""
    upload = st.file_uploader(
        "Image to look up",
        type=viewer.UPLOAD_TYPES,
        key="sim_upload",
        help="Any size or colour: it is resized by the run's pre-processor, like test images.",
    )
    if upload is None:
        st.info("Upload an image of a part to find the run's most similar cases.")
        return None
    data = upload.getvalue()
    rgb = overlays.fit_display(images.read_image(data, name=upload.name), viewer.UPLOAD_KEEP_MAX_SIDE)
    return rgb, f"upload:{hashlib.sha1(data).hexdigest()}", None, None, f"Query: {upload.name} (upload)"


# ---------------------------------------------------------------------------------------------- results


def neighbour_picture(hit, records, maps, masks, dcfg, model, run_dir, ckpt_mtime, opacity, heat: bool):
    """(picture or None, note or None) for one hit: stored map for test images, fresh map for the others."""
    path = str(hit.payload.get("image_path"))
    image, problem = photo(path)
    if not heat:
        return image, problem
    pos = viewer.find_by_path(records, path) if hit.payload.get("split") == "test" else None
    if pos is not None:
        shape = image.shape[:2] if image is not None else overlays.display_size(*maps[pos].shape, CARD_SIDE)
        gt = viewer.gt_mask(records.iloc[pos], masks[pos], shape)
        amap = maps[pos]
    elif image is None:
        return None, problem
    else:
        gt, amap = None, _fresh_map(run_dir, ckpt_mtime, path, model)
    picture = overlays.compose(image, amap, gt, dcfg.pixel_threshold, opacity, *dcfg.map_range, max_side=CARD_SIDE)
    return picture, problem


def neighbour_grid(hits, records, maps, masks, dcfg, model, run_dir, ckpt_mtime, opacity, heat) -> None:
    for start in range(0, len(hits), GRID_COLUMNS):
        for col, (rank, hit) in zip(
            st.columns(GRID_COLUMNS), enumerate(hits[start : start + GRID_COLUMNS], start + 1), strict=False
        ):
            p = hit.payload
            picture, problem = neighbour_picture(
                hit, records, maps, masks, dcfg, model, run_dir, ckpt_mtime, opacity, heat
            )
            with col.container(border=True):
                if picture is not None:
                    st.image(picture, width="stretch")
                else:
                    st.warning(problem or "image not readable", icon=":material/broken_image:")
                st.markdown(
                    f"**#{rank}** · similarity **{hit.score:.3f}**  \n"
                    f"{truth_line(p.get('label'), p.get('defect_type'))} · score {ui.fmt(p.get('score'))}"
                )
                st.caption(f"{p.get('split')} · {short_path(p.get('image_path'))}")


# ---------------------------------------------------------------------------------------------- page


st.title("Similar cases")
st.caption(
    "Have we seen this before? The run's most similar normal and defective images to a test image or "
    "to a photo you upload, found by its own model's features in the similarity index (Qdrant)."
)

run = ui.open_run("sim_run")
if ui.current_version(run) != INDEX_VERSION:
    st.caption(
        f"This run was corrected with feedback (now v{ui.current_version(run)}). Its similarity index holds the "
        f"trained version's (v{INDEX_VERSION}) features, and queries use the same version, so they stay comparable."
    )
if not is_indexed(run):
    not_indexed(run)
    st.stop()
records, maps, masks, dcfg = ui.open_records(run)

left, right = st.columns([2, 3])
with left:
    source = st.radio(
        "Query",
        ["test image", "upload"],
        horizontal=True,
        key="sim_source",
        format_func={"test image": "A test image of this run", "upload": "Upload an image"}.get,
    )
with right:
    c = st.columns(3)
    using = c[0].radio("Embedding", list(EMBEDDINGS), format_func=EMBEDDINGS.get, key="sim_using", help=EMBEDDING_HELP)
    label = c[1].radio("Neighbours' label", list(LABELS), key="sim_label")
    split = c[2].radio(
        "Split",
        list(SPLITS),
        key="sim_split",
        help="Train images are all normal; the test split holds the labelled defects.",
    )
    c = st.columns(3)
    defect_type = c[0].selectbox(
        "Neighbours' defect type", [ANY_TYPE, *sorted(set(records["defect_type"]) | {"good"})], key=f"sim_type_{run.id}"
    )
    k = c[1].slider("Neighbours (k)", 1, 20, 5, key="sim_k")
    opacity = c[2].slider(
        "Heat-map opacity",
        0.0,
        1.0,
        0.5,
        0.05,
        key="sim_opacity",
        help="0 shows the photo only. Train images' maps are computed when first shown.",
    )

query = None
with left, ui.friendly_errors():
    query = (
        choose_test_image(run, records, maps, masks, dcfg, opacity) if source == "test image" else choose_upload(run)
    )

found = None
if query is not None:
    rgb, query_key, query_path, picture, caption = query
    model = None
    with ui.friendly_errors():
        model = ui.version_model(run, INDEX_VERSION)  # the query in the same feature space as the index
    if model is not None:
        try:
            found = _search(
                run.id,
                checkpoint_mtime(run),
                store_key(),
                json.dumps(run.retrieval, sort_keys=True),
                query_key,
                model,
                rgb,
                using,
                int(k),
                LABELS[label],
                None if defect_type == ANY_TYPE else defect_type,
                SPLITS[split],
                query_path,
            )
        except VectorStoreError as exc:
            st.error(str(exc))
            try:  # offer to (re-)index only when the store answers and really holds nothing of this run
                missing = not VectorStore.open().is_indexed(run.id)
            except WorkbenchError:
                missing = False
            if missing:
                index_button(run, key=f"sim_reindex_{run.id}")
        except WorkbenchError as exc:  # e.g. a model that similarity search does not support
            st.error(str(exc))

if query is not None:
    with left:  # the query is shown even when the search failed, so the user sees what was asked
        if picture is None and found is not None:  # an upload: its heat map comes from the search's forward pass
            info = found[0]
            picture = overlays.compose(rgb, info["anomaly_map"], None, dcfg.pixel_threshold, opacity, *dcfg.map_range)
            verdict = viewer.verdict_text(
                None if dcfg.image_threshold is None else info["score"] >= dcfg.image_threshold
            )
            caption += f" · score {ui.fmt(info['score'])} · verdict {verdict}"
        st.image(overlays.fit_display(rgb) if picture is None else picture, caption=caption, width="stretch")

if found is not None:
    info, hits = found
    st.subheader(f"{len(hits)} most similar ({EMBEDDINGS[using]} embedding)")
    st.caption(
        "Heat colours use the run's fixed scale (blue: normal … red: most anomalous); green outline: "
        "ground-truth defect, magenta: predicted defect. Similarity is cosine similarity (1 = identical "
        "features)."
    )
    if not hits:
        st.info("No image of this run matches these filters. Widen the label, defect type or split filter.")
    else:
        if len(hits) < k:
            st.caption(f"Only {len(hits)} image(s) of this run match these filters.")
        neighbour_grid(
            hits,
            records,
            maps,
            masks,
            dcfg,
            model,
            str(ui.registry().run_dir(run.id)),
            checkpoint_mtime(run),
            opacity,
            heat=opacity > 0,
        )

st.divider()
precision_table(run)
with ui.friendly_errors():
    st.caption(f"Similarity index: {VectorStore.open().engine_note}.")
