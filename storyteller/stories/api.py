"""The JSON API of docs/protocol.md: parse, call one service or selector, answer."""

import json

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods

from storyteller.http import ApiError, api_view, json_body
from storyteller.stories import selectors, services


def _field(data: dict, name: str, kind: type, *, required: bool):
    if name not in data:
        if required:
            raise ApiError(400, "invalid", f"The field '{name}' is required.", field=name)
        return None
    value = data[name]
    # bool is an int in Python; a JSON true is not a revision number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, "invalid", f"The field '{name}' must be a {kind.__name__}.", field=name)
    return value


def _validation_error(exc: ValidationError) -> ApiError:
    field, messages = next(iter(exc.message_dict.items()))
    return ApiError(400, "invalid", f"{field}: {' '.join(messages)}", field=field)


def _body(request) -> dict:
    try:
        return json_body(request)
    except RequestDataTooBig:
        raise ApiError(413, "too_large", "The request body is too large.") from None


def _story(request, story_id):
    try:
        return selectors.story_get_for(request.user, story_id)
    except Http404:
        raise ApiError(404, "not_found", "No such story.") from None


@api_view
@require_http_methods(["GET", "POST"])
def stories(request):
    if request.method == "GET":
        return JsonResponse([selectors.story_summary(s) for s in selectors.story_list_for(request.user)], safe=False)
    data = _body(request)
    title = _field(data, "title", str, required=False) or ""
    text = _field(data, "text", str, required=False) or ""
    try:
        story = services.story_create(owner=request.user, title=title, text=text)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return JsonResponse(selectors.story_as_dict(story), status=201)


@api_view
@require_http_methods(["GET", "PUT"])
def story(request, story_id):
    story = _story(request, story_id)
    if request.method == "GET":
        return JsonResponse(selectors.story_as_dict(story))
    data = _body(request)
    text = _field(data, "text", str, required=True)
    base_revision = _field(data, "base_revision", int, required=True)
    title = _field(data, "title", str, required=False)
    try:
        story = services.draft_save(story=story, text=text, title=title, base_revision=base_revision)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    except services.StaleRevision as stale:
        raise ApiError(
            409,
            "conflict",
            f"The story was changed elsewhere (now at revision {stale.story.revision}); nothing was saved.",
            extra={"story": selectors.story_as_dict(stale.story)},
        ) from None
    return JsonResponse(selectors.story_as_dict(story))


_EXPORTS = {
    "txt": ("text/plain; charset=utf-8", lambda story: story.text),
    "md": ("text/markdown; charset=utf-8", lambda story: f"# {story.title}\n\n{story.text}"),
    "json": (
        "application/json",
        lambda story: json.dumps(services.story_export(story), ensure_ascii=False, indent=2),
    ),
}


@api_view
@require_http_methods(["GET"])
def story_export(request, story_id):
    story = _story(request, story_id)
    fmt = request.GET.get("format", "txt")
    if fmt not in _EXPORTS:
        raise ApiError(400, "invalid", "format must be one of txt, md, json.", field="format")
    content_type, render = _EXPORTS[fmt]
    response = HttpResponse(render(story), content_type=content_type)
    filename = f"{slugify(story.title) or 'story'}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@api_view
@require_http_methods(["POST"])
def story_import(request):
    data = _body(request)
    try:
        story = services.story_import(owner=request.user, data=data)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return JsonResponse(selectors.story_as_dict(story), status=201)
