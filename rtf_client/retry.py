"""When and how long the client waits before sending a request again.

Only requests that change nothing are retried (GET, DELETE, and the POSTs that only read:
``/v1/fingerprints``, ``/v1/classify``, ``/v1/search``, ``/v1/neighbors``). Ingest is never retried:
see :meth:`rtf_client.RTFClient.ingest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: 502/504: a gateway in front of the service could not reach it; 503: the service is starting or its
#: database does not answer; 429: RTF_RATE_LIMIT.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more tries after the first, waiting ``backoff * 2**n`` seconds before try n + 1 (at most
    ``max_backoff``). A 429 or 503 with Retry-After waits what it says instead, unless that is more than
    ``max_retry_after``: then the error is raised at once (waiting less would only be refused again)."""

    retries: int = 3
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0), or None: give up."""
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return min(self.max_backoff, self.backoff * 2**attempt)
