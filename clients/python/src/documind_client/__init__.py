"""DocuMind's Python client: ``from documind_client import DocuMind``."""

from documind_client.client import ChatSocket, DocuMind
from documind_client.errors import DocuMindError, TimeoutWaiting
from documind_client.sse import ServerEvent

__all__ = ["ChatSocket", "DocuMind", "DocuMindError", "ServerEvent", "TimeoutWaiting"]
__version__ = "0.1.0"
