"""The tiny models, each built once and shared by every test process of a run."""

import fcntl
from pathlib import Path

from tests.harness.tinymodel import build_tiny_model

# The fast model every test runs unless it says otherwise.
TINY = {}
# A model that writes about a hundred tokens a second and never ends early, for the tests
# that need a story still being written when they act.
# (Measured at 107 tokens/s with float16 weights on the 2-core development machine when it
# was quiet; at 8 layers of 512 it wrote 295, too fast for a Stop to land mid-story.)
SLOW = {"layers": 16, "hidden": 768, "context": 2048, "eos": False}


def shared_tiny_model(folder: Path, **shape) -> Path:
    """The model of this shape in `folder`, built by whichever test process asks first;
    the others wait on the lock and find it there (pytest-xdist runs several)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # A marker written last: a build that died halfway is built again.
        if not (folder / "built").exists():
            build_tiny_model(folder, **shape)
            (folder / "built").touch()
    return folder
