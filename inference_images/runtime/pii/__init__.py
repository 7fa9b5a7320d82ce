"""PII handling in the runtime: detectors (``entities``), a tenant's rules (``rules``), text redaction
(``redactor``), the model-edge step over tensors (``tensors``) and counters (``metrics``).

The server redacts a request's text inputs before the scheduler or the model sees them and before anything
about the request is logged, and scans the model's text outputs on the way back.
"""

from inference_images.runtime.pii.entities import Entity, Finding, find
from inference_images.runtime.pii.redactor import PiiBlockedError, Redaction, redact, scrub
from inference_images.runtime.pii.rules import NO_RULES, PiiRules

__all__ = ["NO_RULES", "Entity", "Finding", "PiiBlockedError", "PiiRules", "Redaction", "find", "redact", "scrub"]
