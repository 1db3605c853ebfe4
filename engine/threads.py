"""The OpenMP worker threads that torch's CPU kernels run on.

Every thread that runs a parallel torch kernel gets a team of OpenMP worker threads of its
own (GNU libgomp, which torch ships), kept for as long as that thread lives. Once two
teams exist and there are more of their threads than cores, libgomp stops letting its
workers spin between parallel regions, and every region wakes them from sleep. On two
cores the 211 float16 products of a one-story decode step took 34.3 ms in a second thread
against 16.4 in the first, and the engine's forward pass 53 ms (median) against 36.5,
whenever another living thread had ever run a parallel kernel: the main thread that
loaded the model, a worker thread that answered an Inspect request, or another engine's
loop (docs/performance.md). So a thread lets its team go when it is done with torch for a
while: the thread that built an engine, Inspect's and training's worker threads, and an
engine's own loop whenever it goes idle.
"""

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

_OMP_PAUSE_HARD = 2  # omp_pause_resource_kind: free the team's threads, not only idle them


@functools.cache
def _pause_resource_all():
    """libgomp's omp_pause_resource_all, from the copy torch loaded (under torch/lib) if
    it is mapped, else from any; None where there is none (another OpenMP runtime, or not
    Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libgomp" in line}
    except OSError:
        return None
    for path in sorted(paths, key=lambda path: "/torch/lib/" not in path):
        try:
            function = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
        return function
    return None


def release_openmp_threads() -> bool:
    """Lets the calling thread's OpenMP team go (it is made again, in about a tenth of a
    millisecond, if the thread runs a parallel kernel later); returns whether there was a
    runtime to ask."""
    pause = _pause_resource_all()
    if pause is None:
        return False
    if pause(_OMP_PAUSE_HARD) != 0:
        log.debug("omp_pause_resource_all refused (called inside a parallel region)")
    return True
