"""The generation engine: plain Python and torch, no Django.

`engine.engine.Engine.submit()` takes a `Request` and returns a `RequestHandle` whose events the
caller relays; `Engine.cancel()` ends a waiting request at once and stops a running one at
the next decoding step.

This package imports nothing itself (it only sets HF_HUB_OFFLINE, below): the web side
names what it needs from the modules that import no torch (config, events, errors,
sources, training.settings), and tests/test_boundaries.py keeps it that way.
"""

import os

# Nothing is fetched from the Hugging Face hub at run time: a hub id is read from the local
# cache, and huggingface_hub's own background requests (its registry of agent tools) stay
# off too. Set before anything imports huggingface_hub, which reads it once; an operator
# may still set HF_HUB_OFFLINE=0 in the environment.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
