"""The generation engine: plain Python and torch, no Django.

`engine.engine.Engine.submit()` takes a `Request` and returns a `RequestHandle` whose events the
caller relays; `Engine.cancel()` ends a waiting request at once and stops a running one at
the next decoding step.

This package imports nothing itself: the web side names what it needs from the modules
that import no torch (config, events, errors, sources, training.settings), and
tests/test_boundaries.py keeps it that way.
"""
