"""Each step of the contract's :class:`~jiancha.producers.contract.Step` as a module
constant, for code that runs on every event (the checks, the case view).

On Python 3.11 a member read from its enum class (``Step.decided``) goes through the enum
type's ``__getattr__`` hook, about ten times the cost of reading a global; the checks read
steps some tens of times per event. ``Step.decided is DECIDED``.
"""

from __future__ import annotations

from jiancha.producers.contract import Step

SUBMITTED = Step.submitted
SUPPLEMENT_REQUESTED = Step.supplement_requested
SUPPLEMENT_RECEIVED = Step.supplement_received
ACCEPTED = Step.accepted
REJECTED_AT_INTAKE = Step.rejected_at_intake
REVIEWED = Step.reviewed
SUSPENDED = Step.suspended
RESUMED = Step.resumed
EXTENDED = Step.extended
DECIDED = Step.decided
FEE_CHARGED = Step.fee_charged
DELIVERED = Step.delivered
COMPLETED = Step.completed
WITHDRAWN = Step.withdrawn
