"""A thread done with torch lets its OpenMP workers go (engine/threads.py)."""

import os
import threading

import pytest
import torch

from engine.threads import release_openmp_threads


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_a_thread_that_ran_a_parallel_kernel_lets_its_workers_go():
    counts = {}

    def work():
        torch.set_num_threads(2)  # a team of two: the test processes run one torch thread
        torch.ones(2**24).sqrt().sum()  # large enough to run in parallel
        counts["team"] = _thread_count()
        counts["released"] = release_openmp_threads()
        counts["after"] = _thread_count()

    kept = torch.get_num_threads()
    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(kept)
    assert counts["released"]
    # The thread's one worker (two threads in its team) is gone; the thread itself lives on.
    assert counts["after"] == counts["team"] - 1
