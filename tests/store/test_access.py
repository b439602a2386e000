"""A read-only dashboard changes nothing, whoever asks; every change that is allowed is in the audit log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.config import PROJECT_ROOT
from core.data import datasets, importing
from core.errors import ReadOnlyError
from core.store import access
from core.store.runs import RunRegistry


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


def test_every_write_is_logged_with_who_what_and_when(artifacts):
    registry = RunRegistry()
    with access.acting_as("qa.lead@plant.example"):
        run = registry.create("patchcore", {"kind": "demo", "category": "demo"}, {"coreset_sampling_ratio": 0.1})
        registry.delete(run.id)
    log = access.read_log()
    assert [e["action"] for e in log] == ["queue run", "delete run"]
    assert all(e["who"] == "qa.lead@plant.example" and e["when"] for e in log)
    assert log[1]["run_id"] == run.id and log[0]["model"] == "patchcore"


def test_read_only_refuses_queue_delete_cancel_and_import_in_core(artifacts, monkeypatch, tmp_path):
    registry = RunRegistry()
    run = registry.create("patchcore", {"kind": "demo", "category": "demo"}, {})
    monkeypatch.setenv("AW_READ_ONLY", "1")
    for action in (
        lambda: registry.delete(run.id),
        lambda: registry.request_cancel(run.id),
        lambda: registry.create("padim", {"kind": "demo", "category": "demo"}, {}),
        lambda: importing.import_folder("line", tmp_path),
    ):
        with pytest.raises(ReadOnlyError, match="read-only"):
            action()
    assert registry.get(run.id).status == "queued"  # still there, untouched
    assert [e["action"] for e in access.read_log()] == ["queue run"]  # refusals change nothing, log included
    assert "line" not in datasets.list_custom()


def test_the_cli_in_read_only_mode_says_so_in_one_line(artifacts, monkeypatch):
    run = RunRegistry().create("patchcore", {"kind": "demo", "category": "demo"}, {})
    monkeypatch.setenv("AW_READ_ONLY", "1")
    result = _cli("delete", run.id)
    assert result.returncode == 2 and "read-only" in result.stderr and "Traceback" not in result.stderr
    assert RunRegistry().get(run.id)


@pytest.mark.parametrize(
    ("claims", "engineers", "role"),
    [
        ({"email": "ana@plant.example", "roles": ["engineer"]}, "", access.ENGINEER),
        ({"email": "ana@plant.example", "roles": "operator engineer"}, "", access.ENGINEER),
        ({"email": "vic@plant.example", "roles": ["viewer"]}, "", access.VIEWER),
        ({"email": "new@plant.example"}, "", access.VIEWER),  # unknown accounts look, they do not change
        ({"email": "Lead@Plant.example"}, "ops@plant.example, lead@plant.example", access.ENGINEER),
    ],
)
def test_roles_come_from_the_providers_claim_or_the_local_list(monkeypatch, claims, engineers, role):
    monkeypatch.setenv("AW_ENGINEERS", engineers)
    assert access.role_of(claims) == role


def test_a_viewer_is_refused_every_write_in_core_and_an_engineers_are_logged_with_the_role(artifacts):
    registry = RunRegistry()
    with access.acting_as("ana@plant.example", access.ENGINEER):
        run = registry.create("patchcore", {"kind": "demo", "category": "demo"}, {})
    with access.acting_as("vic@plant.example", access.VIEWER):
        assert access.read_only()
        with pytest.raises(ReadOnlyError, match="Not allowed for a viewer: 'delete run'. vic@plant.example"):
            registry.delete(run.id)
    assert registry.get(run.id) and not access.read_only()
    assert [(e["who"], e.get("role"), e["action"]) for e in access.read_log()] == [
        ("ana@plant.example", "engineer", "queue run")
    ]
