"""Errors a user can act on.

Every failure caused by input, configuration or missing files is raised as a ``WorkbenchError``
whose message says what went wrong and what to do. The CLI and the pages print the message
instead of a traceback; anything else is a bug.
"""


class WorkbenchError(Exception):
    """An error with a message meant for the user."""


class ImageError(WorkbenchError):
    """An image file could not be read or is unusable."""


class DatasetError(WorkbenchError):
    """A dataset is missing, empty or inconsistent."""


class WeightsError(WorkbenchError):
    """Model weights are missing or invalid."""


class RunError(WorkbenchError):
    """A run does not exist or is in the wrong state for the request."""


class VectorStoreError(WorkbenchError):
    """The vector store is unreachable, or a query does not fit the collection."""


class RunCancelled(Exception):
    """Raised inside a run when the user cancelled it (not an error: the run ends as 'cancelled')."""


def explain(exc: BaseException, phase: str = "") -> str:
    """A short message a user can act on, for any exception raised inside a run (anomalib, Lightning, torch,
    pandas, PIL…). ``WorkbenchError`` messages are already meant for users and pass through unchanged; the
    traceback belongs in the run's log, not here."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    where = f" during {phase}" if phase else ""
    if isinstance(exc, MemoryError) or "can't allocate memory" in lowered or "out of memory" in lowered:
        return (
            f"Out of memory{where}. Use fewer or smaller images (the 'Use only N training images' option, a "
            "smaller image_size), a smaller coreset, or a machine with more memory."
        )
    image = _image_being_read(exc)
    if image is not None:
        return (
            f"An image could not be read{where}: {image} ({text[:200]}). It was probably changed or damaged after "
            "the import; import the dataset again."
        )
    if isinstance(exc, FileNotFoundError) or "missing file path" in lowered:
        return (
            f"A file the run needs is missing{where}: {text[:300]}. If the dataset's images were moved or "
            "deleted, import it again."
        )
    if "must have equal len keys" in lowered or "mismatch between anomalous images and ground truth" in lowered:
        return (
            f"anomalib could not pair the dataset's images with its masks{where} ({text[:200]}). Every "
            "abnormal image needs a mask named like it (x.png ↔ x_mask.png), or none at all."
        )
    return f"{type(exc).__name__}{where}: {text[:400]}"


def _image_being_read(exc: BaseException) -> str | None:
    """The image file a decoder (Pillow, OpenCV) failed on, from the traceback; '' if a decoder failed on an
    unknown file; None if the failure was not in image decoding."""
    tb, in_decoder, path = exc.__traceback__, False, ""
    while tb is not None:
        frame = tb.tb_frame
        if "/PIL/" in frame.f_code.co_filename or "/cv2/" in frame.f_code.co_filename:
            in_decoder = True
        for name in ("image_path", "path"):
            value = frame.f_locals.get(name)
            if isinstance(value, str) and value.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
                path = value
        tb = tb.tb_next
    if in_decoder or type(exc).__name__ in {"UnidentifiedImageError", "DecompressionBombError"}:
        return path or "a dataset image"
    return None


class ReadOnlyError(WorkbenchError):
    """A write action was asked for where writing is not allowed (AW_READ_ONLY=1 or a viewer's login)."""
