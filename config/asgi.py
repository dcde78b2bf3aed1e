"""ASGI entry point: HTTP through Django, WebSockets through Channels' router.

Once everything is loaded, the objects that exist (Django, the apps, their libraries: they live as long
as the process) are moved out of the cyclic garbage collector's reach (``gc.freeze()``). Its full
collections walk every tracked object while the event loop waits: with the start-up heap inside them
they took up to 242 ms with 500 chat sockets asking at once, ~120 ms without it (measured with
``gc.callbacks`` in ``benchmarks/chat.py``'s server, two runs each).
"""

import gc
import os

from config.asgi_handler import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django's handler, with the sync middleware chain and the view on one reused thread per request.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from config.websocket_origin import OriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginValidator(URLRouter(websocket_urlpatterns)),
    }
)

gc.freeze()  # after the imports above: see the module docstring
