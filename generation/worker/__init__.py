"""What runs only in a worker process: the model it serves and the live switch
(serving.py), start-up and heartbeat (supervisor.py), one generation from row to engine to
writer (relay.py), Inspect (inspection.py), training jobs and comparisons (training.py),
and the one registry of engines they all take their models from (engines.py).

The web side never imports this package's modules beyond `supervisor`, which connects to
Celery's start-up signal and loads the rest only when a worker starts.
"""
