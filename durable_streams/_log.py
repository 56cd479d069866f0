"""The ``durable_streams`` logger, which redacts secrets from every record it emits.

Every module logs through ``log`` from here (one logger, no children: a filter on a
logger does not see its children's records); the filter installed here
on that logger rewrites each record's message with query values and userinfo passwords
redacted, so no call site has to remember to.
"""

from __future__ import annotations

import logging

from ._protocol.redact import redact_text

log = logging.getLogger("durable_streams")


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


if not any(isinstance(f, _RedactSecrets) for f in log.filters):
    log.addFilter(_RedactSecrets())
