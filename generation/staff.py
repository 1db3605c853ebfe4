"""Who may use the staff pages: staff accounts, each page and action behind the Django
permission that matches it (docs/operations.md lists them), like the admin's own pages."""

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required


def staff_permission_required(permission: str):
    """A staff page or action: anyone who is not staff goes to the admin's login page; a
    staff account without `permission` ("generation.view_dashboard") gets 403."""

    def decorator(view):
        return staff_member_required(permission_required(permission, raise_exception=True)(view))

    return decorator
