"""EfficientAD (core.models.efficientad): a run with an explicitly untrained teacher trains as a labelled pipeline
check, the pretrained teacher missing offline is named with where it goes, and the launch form's time note
suggests steps that fit a demo."""

from __future__ import annotations

import pytest

from core import models
from core.errors import WeightsError
from core.models import efficientad
from core.store.runs import DONE, RunRegistry


def test_efficientad_without_its_teacher_offline_explains_where_it_goes(artifacts, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("AW_IMAGENET_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="pretrained_teacher_small.pth"):
        models.create_model("efficientad", {"teacher": "pretrained"})


def test_the_time_estimate_suggests_steps_that_fit_in_fifteen_minutes():
    note = efficientad.efficientad_time_note(5000)
    suggested = int(note.split("lower the steps to about ")[1].split(".")[0])
    assert "fits within ~15 minutes" in efficientad.efficientad_time_note(suggested)


def test_efficientad_trains_a_few_steps_with_an_explicitly_untrained_teacher(demo_runs):
    run = RunRegistry().get(demo_runs[1])
    assert run.status == DONE, run.error
    assert run.model == "efficientad" and run.params["max_steps"] == 3
    assert 0.0 <= run.metrics["image_auroc"] <= 1.0
    from core.models import model_warnings

    assert "UNTRAINED" in model_warnings("efficientad", run.params)[0]
