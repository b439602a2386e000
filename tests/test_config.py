"""Where the product looks for things: ../shared only when it is there and not switched off."""

from __future__ import annotations

from core.config import DEFAULT_SHARED_ROOT, shared_root


def test_aw_shared_none_turns_every_automatic_lookup_off():
    for value in ("none", "NONE", " off "):
        assert shared_root({"AW_SHARED": value}) is None


def test_aw_shared_points_at_another_folder_when_it_exists(tmp_path):
    assert shared_root({"AW_SHARED": str(tmp_path)}) == tmp_path.resolve()
    assert shared_root({"AW_SHARED": str(tmp_path / "missing")}) is None  # a wrong path is not a folder of data


def test_unset_means_the_folder_beside_the_checkout_if_it_is_there():
    expected = DEFAULT_SHARED_ROOT.resolve() if DEFAULT_SHARED_ROOT.is_dir() else None
    assert shared_root({}) == expected
