"""The testing kit's errors: one base class, and the one a user must act on (Node.js)."""

from __future__ import annotations

__all__ = ["NodeNotFoundError", "ReferenceServerError"]


class ReferenceServerError(RuntimeError):
    """The reference server could not be installed or started, or refused a control call.

    The message carries what is known: the command, the server's stderr, npm's output.
    """


class NodeNotFoundError(ReferenceServerError):
    """Node.js (``node``, or ``npm`` for the first install) is missing or too old.

    The message says how to install it, or how to point the kit at it
    (``DURABLE_STREAMS_NODE``, ``DURABLE_STREAMS_NPM``).
    """
