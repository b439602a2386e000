"""A run that fails says what to do in one line; WorkbenchError messages pass through as they are."""

from __future__ import annotations

from core.errors import ImageError, WorkbenchError, explain


def test_a_workbench_error_passes_through_unchanged():
    assert explain(ImageError("x.png is empty"), "training") == "x.png is empty"
    assert issubclass(ImageError, WorkbenchError)


def test_out_of_memory_says_what_to_make_smaller():
    message = explain(MemoryError(), "coreset selection")
    assert message.startswith("Out of memory during coreset selection.") and "smaller image_size" in message
    assert explain(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")).startswith("Out of")


def test_a_missing_file_says_to_import_again():
    message = explain(FileNotFoundError(2, "No such file", "/data/line3/train/good/a.png"), "training")
    assert "A file the run needs is missing during training" in message and "import it again" in message


def test_anything_else_is_its_type_the_phase_and_a_short_message():
    message = explain(ValueError("bad   value\n across lines " + "y" * 1000), "testing")
    assert message.startswith("ValueError during testing: bad value across lines y")
    assert len(message) < 450
