"""The JSON API of docs/protocol.md: parse, call one service or selector, answer."""

import json

from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods

from generation.selectors import generation_last_for_story
from storyteller.http import ApiError, api_view, json_body
from storyteller.stories import selectors, services
from storyteller.stories.models import TreeNode
from storyteller.validators import Invalid, check_bool, check_dict, check_int, check_list, check_string


def _field(data: dict, name: str, check, *, required: bool, nullable: bool = False):
    """data[name] passed through one of storyteller.validators' checks, or None when absent
    (or null, where that is allowed)."""
    if name not in data:
        if required:
            raise ApiError(400, "invalid", f"The field '{name}' is required.", field=name)
        return None
    value = data[name]
    if value is None and nullable:
        return None
    try:
        return check(name, value)
    except Invalid as exc:
        message = exc.message.removesuffix(".") + ", or null." if nullable else exc.message
        raise ApiError(400, "invalid", message, field=exc.field) from None


def _validation_error(exc: ValidationError) -> ApiError:
    field, messages = next(iter(exc.message_dict.items()))
    return ApiError(400, "invalid", f"{field}: {' '.join(messages)}", field=field)


def _body(request) -> dict:
    try:
        return json_body(request)
    except RequestDataTooBig:
        raise ApiError(413, "too_large", "The request body is too large.") from None


def owned_story(request, story_id):
    """The caller's story, or ApiError 404 (another writer's answers the same)."""
    try:
        return selectors.story_get_for(request.user, story_id)
    except Http404:
        raise ApiError(404, "not_found", "No such story.") from None


def _story_in_trash(request, story_id):
    try:
        return selectors.story_get_for(request.user, story_id, trashed=True)
    except Http404:
        raise ApiError(404, "not_found", "No such story in the trash.") from None


def _stale(stale: services.StaleRevision) -> ApiError:
    return ApiError(
        409,
        "conflict",
        f"The story was changed elsewhere (now at revision {stale.story.revision}); nothing was saved.",
        extra={"story": selectors.story_as_dict(stale.story)},
    )


@api_view
@require_http_methods(["GET", "POST"])
def stories(request):
    if request.method == "GET":
        if request.GET.get("trash") in ("1", "true"):
            found = selectors.story_trash_for(request.user)
        else:
            found = selectors.story_list_for(request.user, query=request.GET.get("q", ""))
        return JsonResponse([selectors.story_summary(s) for s in found], safe=False)
    data = _body(request)
    title = _field(data, "title", check_string, required=False) or ""
    text = _field(data, "text", check_string, required=False) or ""
    try:
        story = services.story_create(owner=request.user, title=title, text=text)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return JsonResponse(selectors.story_as_dict(story), status=201)


# What a PUT may change, with the check of the JSON type each takes; preset may be null
# (no preset). The services check the values themselves.
_CHANGES = (
    ("text", check_string),
    ("title", check_string),
    ("memory", check_string),
    ("note", check_string),
    ("note_depth", check_int),
    ("settings", check_dict),
    ("model_spans", check_list),
    ("preset", check_int),
    ("allow_training", check_bool),
)


@api_view
@require_http_methods(["GET", "PUT", "DELETE"])
def story(request, story_id):
    story = owned_story(request, story_id)
    if request.method == "GET":
        return JsonResponse(selectors.story_as_dict(story))
    if request.method == "DELETE":
        story = services.story_trash(story)
        return JsonResponse(selectors.story_summary(story))
    data = _body(request)
    base_revision = _field(data, "base_revision", check_int, required=True)
    changes = {
        name: _field(data, name, check, required=False, nullable=name == "preset")
        for name, check in _CHANGES
        if name in data
    }
    if not changes:
        names = ", ".join(name for name, _ in _CHANGES)
        raise ApiError(400, "invalid", f"Nothing to save: give at least one of {names}.", field="text")
    try:
        story = services.draft_save(story=story, base_revision=base_revision, **changes)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    except services.StaleRevision as stale:
        raise _stale(stale) from None
    return JsonResponse(selectors.story_as_dict(story))


@api_view
@require_http_methods(["POST"])
def story_restore(request, story_id):
    story = services.story_untrash(_story_in_trash(request, story_id))
    return JsonResponse(selectors.story_as_dict(story))


@api_view
@require_http_methods(["GET"])
def revisions(request, story_id):
    story = owned_story(request, story_id)
    return JsonResponse([selectors.revision_as_dict(r) for r in selectors.revision_list(story)], safe=False)


def _revision(story, number):
    try:
        return selectors.revision_get(story, number)
    except Http404:
        raise ApiError(404, "not_found", f"This story has no revision {number}.") from None


@api_view
@require_http_methods(["GET"])
def revision(request, story_id, number):
    revision = _revision(owned_story(request, story_id), number)
    return JsonResponse(selectors.revision_as_dict(revision, with_text=True))


@api_view
@require_http_methods(["POST"])
def revision_restore(request, story_id, number):
    story = owned_story(request, story_id)
    revision = _revision(story, number)
    base_revision = _field(_body(request), "base_revision", check_int, required=True)
    try:
        story = services.revision_restore(story=story, revision=revision, base_revision=base_revision)
    except services.StaleRevision as stale:
        raise _stale(stale) from None
    return JsonResponse(selectors.story_as_dict(story))


@api_view
@require_http_methods(["POST", "DELETE"])
def share(request, story_id):
    story = owned_story(request, story_id)
    story = services.share_enable(story) if request.method == "POST" else services.share_revoke(story)
    path = selectors.share_path(story)
    return JsonResponse({"share_url": request.build_absolute_uri(path) if path else None, "share_path": path})


def _lore_fields(data: dict, *, required: bool) -> dict:
    fields = {
        "keys": _field(data, "keys", check_string, required=required),
        "text": _field(data, "text", check_string, required=required),
        "enabled": _field(data, "enabled", check_bool, required=False),
        "secondary_keys": _field(data, "secondary_keys", check_string, required=False),
        "logic": _field(data, "logic", check_string, required=False),
        "priority": _field(data, "priority", check_int, required=False),
    }
    # null is the default scan depth; absent leaves it as it is.
    fields["scan_chars"] = (
        _field(data, "scan_chars", check_int, required=False, nullable=True) if "scan_chars" in data else services.UNSET
    )
    return fields


@api_view
@require_http_methods(["GET", "POST"])
def lore(request, story_id):
    story = owned_story(request, story_id)
    if request.method == "GET":
        return JsonResponse([selectors.lore_as_dict(e) for e in story.lore.all()], safe=False)
    fields = _lore_fields(_body(request), required=True)
    if fields["enabled"] is None:
        fields["enabled"] = True
    try:
        entry = services.lore_create(story=story, **fields)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return JsonResponse(selectors.lore_as_dict(entry), status=201)


@api_view
@require_http_methods(["PUT", "DELETE"])
def lore_entry(request, story_id, entry_id):
    story = owned_story(request, story_id)
    try:
        entry = selectors.lore_get_for(story, entry_id)
    except Http404:
        raise ApiError(404, "not_found", "No such lore entry.") from None
    if request.method == "DELETE":
        services.lore_delete(entry)
        return JsonResponse({"deleted": entry_id})
    try:
        entry = services.lore_update(entry, **_lore_fields(_body(request), required=False))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return JsonResponse(selectors.lore_as_dict(entry))


@api_view
@require_http_methods(["GET", "POST"])
def tree(request, story_id):
    story = owned_story(request, story_id)
    if request.method == "GET":
        return JsonResponse(selectors.tree_as_dict(story))
    data = _body(request)
    fields = {
        "kind": _field(data, "kind", check_string, required=True),
        "text": _field(data, "text", check_string, required=True),
        "start": _field(data, "start", check_int, required=True),
        "end": _field(data, "end", check_int, required=True),
        "label": _field(data, "label", check_string, required=False) or "",
        "model_spans": _field(data, "model_spans", check_list, required=False),
        "generation_id": _field(data, "generation_id", check_int, required=False, nullable=True),
        "make_current": _field(data, "current", check_bool, required=False) is not False,
        "key": _field(data, "key", check_string, required=False) or "",
    }
    # Absent, the tree finds the parent; null starts the tree anew.
    if "parent" in data:
        fields["parent"] = _field(data, "parent", check_int, required=True, nullable=True)
    try:
        added = services.tree_add(story=story, **fields)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    answer = {**selectors.tree_node_as_dict(added.node, with_text=True), "pruned": added.pruned}
    return JsonResponse(answer, status=201 if added.created else 200)


def _no_node(node_id) -> ApiError:
    return ApiError(404, "not_found", f"This story's tree has no node {node_id}.")


def _tree_node(story, node_id):
    try:
        return selectors.tree_node_get(story, node_id)
    except Http404:
        raise _no_node(node_id) from None


@api_view
@require_http_methods(["PUT"])
def tree_current(request, story_id):
    story = owned_story(request, story_id)
    node_id = _field(_body(request), "node", check_int, required=True)
    try:
        story = services.tree_make_current(story, _tree_node(story, node_id))
    except TreeNode.DoesNotExist:
        # Deleted by another request between the two.
        raise _no_node(node_id) from None
    return JsonResponse({"current": story.tree_node_id})


@api_view
@require_http_methods(["GET", "DELETE"])
def tree_node(request, story_id, node_id):
    story = owned_story(request, story_id)
    node = _tree_node(story, node_id)
    if request.method == "GET":
        return JsonResponse(selectors.tree_node_as_dict(node, with_text=True))
    try:
        deleted = services.tree_delete(node)
    except ValidationError as exc:
        raise ApiError(409, "conflict", exc.messages[0]) from None
    return JsonResponse({"deleted": deleted})


@api_view
@require_http_methods(["GET"])
def story_context(request, story_id):
    """What the model saw for the story's last generation."""
    generation = generation_last_for_story(owned_story(request, story_id))
    if generation is None:
        raise ApiError(404, "not_found", "This story has no generation yet.")
    return JsonResponse(
        {
            "generation_id": generation.id,
            "status": generation.status,
            "model": generation.model_name,
            **generation.context,
        }
    )


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
    story = owned_story(request, story_id)
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
