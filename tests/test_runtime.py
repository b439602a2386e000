"""Process tuning (core.runtime): torch's threads, and glibc's heap switched for a coreset step and back."""

from __future__ import annotations

import sys

import pytest
import torch

from core import runtime

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tuning is Linux only")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_are_what_was_asked_else_aw_threads_else_every_core(restore_threads, monkeypatch):
    assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("AW_THREADS", "2")
    assert runtime.set_threads() == 2 and torch.get_num_threads() == 2
    monkeypatch.delenv("AW_THREADS")
    assert runtime.set_threads() == torch.get_num_threads() >= 1


@linux_glibc
def test_the_heap_is_limited_inside_a_coreset_block_and_tuned_for_inference_after_it():
    assert runtime.limit_heap_growth() is True  # glibc took the setting
    assert runtime.tune_malloc_for_inference() is True
    with runtime.heap_limited() as block:
        assert isinstance(block, runtime.heap_limited)
        buffer = bytearray(8 << 20)  # a large allocation inside the block is served and freed as usual
        del buffer


def test_an_error_inside_a_heap_limited_block_is_not_swallowed():
    with pytest.raises(ValueError, match="inside"), runtime.heap_limited():
        raise ValueError("raised inside")


def test_threads_block_sets_and_restores_the_count(restore_threads):
    torch.set_num_threads(2)
    with runtime.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with runtime.threads(None):  # not measured yet: unchanged
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("slow_on", [1, 2])
def test_one_image_runs_on_the_thread_count_that_was_measured_faster(restore_threads, monkeypatch, slow_on):
    import time

    monkeypatch.delenv("AW_THREADS", raising=False)
    torch.set_num_threads(2)
    seen = []

    def step():  # a step that is slower on one of the two counts
        seen.append(torch.get_num_threads())
        time.sleep(0.02 if torch.get_num_threads() == slow_on else 0.001)

    assert runtime.fastest_threads(step) == 3 - slow_on
    assert set(seen) == {1, 2} and torch.get_num_threads() == 2  # both tried; the process's count restored
    monkeypatch.setenv("AW_THREADS", "2")  # the user's own count: kept, not measured
    assert runtime.fastest_threads(step) == 2
