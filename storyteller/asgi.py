import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyteller.settings")
# Django must be set up before anything imports models (the consumers do). Static files are
# answered by WhiteNoise's middleware inside it (see STATICFILES_DIRS in the settings), so
# that `make run` needs no other web server.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from generation.routing import websocket_urlpatterns  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Refuses a handshake whose Origin is not this site's: a page elsewhere opening a socket
    with the writer's cookies. A handshake with no Origin at all comes from a script, not a
    browser (browsers always send one), with a session of its own: it is accepted."""

    def valid_origin(self, parsed_origin):
        return parsed_origin is None or super().valid_origin(parsed_origin)


# The hosts channels' AllowedHostsOriginValidator would take.
_hosts = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), _hosts),
    }
)
