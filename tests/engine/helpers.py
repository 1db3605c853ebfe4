from engine.engine import Request
from engine.events import Delta, Finished, Started


def run(engine, prompt, params, request_id="r"):
    """(started, deltas, finished) of one request, run to the end."""
    return events_of(engine.submit(Request(request_id, prompt, params)))


def events_of(handle):
    """(started, deltas, finished) of a submitted request, run to the end."""
    started, deltas, finished = None, [], None
    for event in handle.events():
        if isinstance(event, Started):
            started = event
        elif isinstance(event, Delta):
            deltas.append(event.text)
        elif isinstance(event, Finished):
            finished = event
    return started, deltas, finished
