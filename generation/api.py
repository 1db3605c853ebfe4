"""Generations over HTTP (docs/protocol.md), for scripts that do not hold a socket: start
one, then read it. The socket streams the same generation's words as they come."""

from django.http import Http404, JsonResponse
from django.views.decorators.http import require_http_methods

from generation import selectors, services
from storyteller.http import ApiError, api_view, json_body
from storyteller.stories import selectors as story_selectors

# The HTTP status of each refusal code of the protocol.
STATUS = {"invalid": 400, "not_found": 404, "busy": 409, "too_large": 413, "limit": 429, "unavailable": 503}


def _story(request, story_id):
    try:
        return story_selectors.story_get_for(request.user, story_id)
    except Http404:
        raise ApiError(404, "not_found", "No such story.") from None


@api_view
@require_http_methods(["POST"])
def generations(request, story_id):
    story = _story(request, story_id)
    data = json_body(request)
    text, request_id = data.get("text"), data.get("request_id")
    if not isinstance(text, str):
        raise ApiError(400, "invalid", "text must be a string: the story up to the cursor.", field="text")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 100):
        raise ApiError(400, "invalid", "request_id must be a string of at most 100 characters.", field="request_id")
    try:
        generation = services.generation_start(
            story=story, user=request.user, text=text, params=data.get("params"), request_id=request_id or ""
        )
    except services.GenerationRefused as refused:
        raise ApiError(STATUS.get(refused.code, 400), refused.code, refused.message) from None
    answer = {**selectors.generation_as_dict(generation), "position": selectors.queue_position(generation)}
    return JsonResponse(answer, status=202)


@api_view
@require_http_methods(["GET"])
def generation(request, story_id, generation_id):
    found = selectors.generation_for_story(_story(request, story_id), generation_id)
    if found is None:
        raise ApiError(404, "not_found", "This story has no such generation.")
    return JsonResponse(selectors.generation_as_dict(found))
