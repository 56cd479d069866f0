"""Test against the real Durable Streams reference server, with nothing copied.

``pip install 'durable-streams-aio[testing]'`` brings the pytest plugin (fixtures
``durable_streams_server``, ``durable_streams_session`` and
``durable_streams_stream_factory``) and this module::

    from durable_streams.testing import Fault, ReferenceServer

    with ReferenceServer(long_poll_timeout_ms=2000) as server:
        server.inject("/orders", Fault(status=503, count=2, method="POST"))
        ...  # point the code under test at server.url

The server is the npm package ``@durable-streams/server`` at the version this package
pins. It needs Node.js 20 or newer; the first use installs it with ``npm ci`` into a
user cache directory (:func:`install_server`), and later uses work offline.
"""

from ._errors import NodeNotFoundError as NodeNotFoundError
from ._errors import ReferenceServerError as ReferenceServerError
from ._faults import Fault as Fault
from ._faults import SseEvent as SseEvent
from ._install import install_server as install_server
from ._install import server_version as server_version
from ._server import ReferenceServer as ReferenceServer
from ._streams import StreamFactory as StreamFactory

__all__ = [
    "Fault",
    "NodeNotFoundError",
    "ReferenceServer",
    "ReferenceServerError",
    "SseEvent",
    "StreamFactory",
    "install_server",
    "server_version",
]
