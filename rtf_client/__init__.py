"""A Python client of the RTF service (Real-Time Fingerprints). Needs only httpx.

    from rtf_client import RTFClient

    with RTFClient("http://127.0.0.1:8000") as rtf:
        top = rtf.anomalies(limit=5)[0]
        for n in rtf.neighbors(top.object_id, k=5):
            print(n.object_id, n.similarity, n.label)

Reference: docs/client.md.
"""

from ._bodies import Filters
from .client import MAX_NEIGHBOR_IDS, RTFClient, __version__
from .errors import (
    Conflict,
    FieldError,
    NotFound,
    RateLimited,
    RTFConnectionError,
    RTFError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from .models import (
    AnomalyEntry,
    Classification,
    ConeMatch,
    FeedbackResult,
    Fingerprint,
    IngestedObject,
    IngestResult,
    ModelInfo,
    Models,
    Neighbor,
    Neighbors,
    ObjectDetail,
    ObjectSummary,
    Page,
    Readiness,
)
from .retry import RETRY_STATUSES, RetryPolicy

__all__ = [
    "MAX_NEIGHBOR_IDS",
    "RETRY_STATUSES",
    "AnomalyEntry",
    "FeedbackResult",
    "Classification",
    "ConeMatch",
    "Conflict",
    "FieldError",
    "Filters",
    "Fingerprint",
    "IngestResult",
    "IngestedObject",
    "ModelInfo",
    "Models",
    "Neighbor",
    "Neighbors",
    "NotFound",
    "ObjectDetail",
    "ObjectSummary",
    "Page",
    "RTFClient",
    "RTFConnectionError",
    "RTFError",
    "RateLimited",
    "Readiness",
    "RetryPolicy",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
    "__version__",
]
