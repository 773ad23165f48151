"""schemathesis hooks for tests/fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Each generated request that carries a valid Idempotency-Key gets a key of its own: generated
keys repeat ("0", "00"...), and the same key on another request is answered 422 by design,
which schemathesis would take for a valid request refused. Invalid keys are left as generated,
so their 400 is still checked.
"""

import re
import uuid

import schemathesis

from svc.resource import IDEMPOTENCY_KEY


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """Make a valid Idempotency-Key unique to this request."""
    # A case that leaves out a required header (Authorization, say) is left alone: editing it
    # makes schemathesis re-derive what the case is about, and it would send the header again.
    scenario = getattr(getattr(getattr(case.meta, "phase", None), "data", None), "scenario", None)
    if scenario is not None and "missing" in str(scenario).lower():
        return
    key = (case.headers or {}).get("Idempotency-Key")
    if key is not None and re.fullmatch(IDEMPOTENCY_KEY, key):
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
