"""Generations over HTTP (docs/protocol.md), for scripts that do not hold a socket: start
one, then read it. The socket streams the same generation's words as they come."""

from django.http import JsonResponse
from django.views.decorators.http import require_http_methods

from generation import selectors, services
from storyteller.http import ApiError, api_view, json_body
from storyteller.stories.api import owned_story

# The HTTP status of each refusal code of the protocol.
STATUS = {"invalid": 400, "not_found": 404, "busy": 409, "too_large": 413, "limit": 429, "unavailable": 503}


# How many generations one listing returns at most.
LIST_LIMIT = 100


@api_view
@require_http_methods(["GET", "POST"])
def generations(request, story_id):
    story = owned_story(request, story_id)
    if request.method == "GET":
        return _listing(request, story)
    data = json_body(request)
    try:
        request_id = services.request_id_checked(data.get("request_id"))
        generation = services.generation_start(
            story=story,
            user=request.user,
            text=data.get("text"),
            params=data.get("params"),
            request_id=request_id or "",
            tool=data.get("tool"),
        )
    except services.GenerationRefused as refused:
        raise ApiError(STATUS.get(refused.code, 400), refused.code, refused.message, field=refused.field) from None
    answer = {**selectors.generation_as_dict(generation), "position": selectors.queue_position(generation)}
    return JsonResponse(answer, status=202)


@api_view
@require_http_methods(["GET"])
def generation(request, story_id, generation_id):
    found = selectors.generation_for_story(owned_story(request, story_id), generation_id)
    if found is None:
        raise ApiError(404, "not_found", "This story has no such generation.")
    return JsonResponse(selectors.generation_as_dict(found))


def _listing(request, story):
    """The story's generations, newest first: `?limit=` (1 to 100, default 20) of them, and
    with `?choices=1` only those that recorded the model's choices (the editor's hover)."""
    raw = request.GET.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= LIST_LIMIT:
        raise ApiError(400, "invalid", f"limit is a whole number from 1 to {LIST_LIMIT}.", field="limit")
    flag = request.GET.get("choices", "0")
    if flag not in ("0", "1"):
        raise ApiError(400, "invalid", "choices is 0 or 1.", field="choices")
    found = selectors.generations_for_story(story, limit=int(raw), with_choices=flag == "1")
    return JsonResponse({"generations": [selectors.generation_as_dict(g) for g in found]})
