"""The Inspect panel's requests, answered on this worker with the model serving now."""

import threading
import weakref

from engine.errors import InspectError, ModelLoadError
from engine.inspect import Inspector
from engine.threads import release_openmp_threads
from generation import realtime
from generation.worker.serving import model_wanted, slot

_inspectors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def inspector_for(engine) -> Inspector:
    """The Inspect panel's views for an engine's model, made once per engine."""
    with _lock:
        inspector = _inspectors.get(engine)
        if inspector is None:
            inspector = _inspectors[engine] = Inspector(engine.loaded)
        return inspector


def answer_with_model(reply_to: str, request_id: str | None, answer) -> None:
    """Replies to the socket `reply_to` with answer(engine, ids), made with the model serving
    now on this worker (`ids`: the request_id to echo, if the socket gave one)."""
    ids = {"request_id": request_id} if request_id is not None else {}
    try:
        lease = slot.acquire(model_wanted)
    except ModelLoadError as exc:
        realtime.reply(reply_to, error_answer(ids, "unavailable", f"The model could not be loaded: {exc}"))
        return
    try:
        message = answer(lease.engine, ids)
    finally:
        slot.release(lease)
        # This thread lives on in the worker's pool: its OpenMP team would slow the engine.
        release_openmp_threads()
    realtime.reply(reply_to, message)


def inspection_run(reply_to: str, request: dict, request_id: str | None) -> None:
    """Answers an inspect request with the model serving now, on this worker."""
    answer_with_model(reply_to, request_id, lambda engine, ids: _inspection(engine, request, ids))


def _inspection(engine, request: dict, ids: dict) -> dict:
    inspector = inspector_for(engine)
    view = request["view"]
    try:
        if view == "tokens":
            tokens = inspector.tokens(request["text"])
            result = {"tokens": tokens, "count": len(tokens)}
        elif view == "attention":
            result = inspector.attention(request["text"], layer=request["layer"], position=request["position"])
        elif view == "neighbours":
            result = inspector.neighbours(request["word"])
        else:
            result = {"points": inspector.map(request["words"])}
    except InspectError as exc:
        return error_answer(ids, "invalid", str(exc))
    return {"type": "inspection", **ids, "view": view, "model": engine.name, **result}


def error_answer(ids: dict, code: str, message: str) -> dict:
    """A socket's `error` for one of its requests (`ids`: its request_id, if it gave one)."""
    return {"type": "error", **ids, "code": code, "message": message}


def request_failed(reply_to: str, request_id: str | None, message: str) -> None:
    """Tells the socket that asked that its request (Inspect, the context bar) failed."""
    ids = {"request_id": request_id} if request_id is not None else {}
    realtime.reply(reply_to, error_answer(ids, "internal", message))
