"""Everything a check is written with, in one module (as stamina keeps its API to a few names).

A check module, ``checks/<prefix>_*.py``, imports the grader through this module and nothing
else (``.importlinter``'s "Checks import the grader only through grader.checkkit";
``tests/test_checkkit.py``), besides the checks' own ``checks.common`` and ``checks.stats``::

    from grader.checkkit import Context, ErrorStatus, Passed, check

    @check("m3.retries-503", "Retries a 503", why="...", hint="...")
    async def retries_503(ctx: Context) -> Passed:
        '''What the check does, in a sentence.'''
        await ctx.stack.stub.add_fault(ErrorStatus(503), amounts=ctx.amounts(1), first_n=1)
        ...
        return Passed("retried once, then succeeded")

What a name stands for is defined where it lives (the module named in its import below); this
module only gathers them. A name a check needs that is not here is added here, with its group.
"""

from __future__ import annotations

from grader.backends.base import ApiInstance
from grader.engine import k6
from grader.engine.context import Context
from grader.engine.driver import CheckoutResult
from grader.engine.figures import bars, timeline
from grader.engine.registry import check
from grader.errors import (
    CheckFailed,
    CheckInconclusive,
    CheckSkipped,
    EdgeUnavailable,
    EnvironmentProblem,
    ToolTimeout,
)
from grader.learner import budgets, learnerfile, nginxconf
from grader.learner.budgets import (
    COURSE_RETRIES,
    COURSE_RETRY_BUDGET,
    MAX_ATTEMPTS_BOUND,
    RETRY_RATIO_BOUND,
    Budgets,
    Retries,
    RetryBudget,
)
from grader.learner.yamlfile import Loaded
from grader.model import Evidence, Location, Passed
from grader.series import (
    AttemptCounts,
    AttemptSpan,
    Chart,
    CheckoutTimeline,
    ConnectTimeline,
    LatencyByPhase,
    OutageAttempts,
    Percentile,
    PhaseLatency,
    ProbeLatencies,
    RetryStorm,
    Threshold,
)
from grader.stubclient import (
    Attempt,
    Charge,
    Decline,
    Delay,
    Dribble,
    ErrorStatus,
    Fault,
    Hang,
    LostResponse,
    Reset,
)

__all__ = [  # noqa: RUF022 (in groups, each under its comment, not in one alphabetical run)
    # Declaring a check, and what it is given: the repo, the budgets, the stack, the driver
    "check",
    "Context",
    # Verdicts: return Passed (an Evidence); raise CheckFailed, CheckInconclusive, CheckSkipped
    "Passed",
    "Evidence",
    "Location",
    "CheckFailed",
    "CheckInconclusive",
    "CheckSkipped",
    # What the environment raises at a check (never the learner's fault: ERROR or SKIP)
    "EnvironmentProblem",
    "ToolTimeout",
    "EdgeUnavailable",
    # Driving the learner's API: one checkout's answer, and an instance of the API to send it to
    "CheckoutResult",
    "ApiInstance",
    # The stub client's faults (ctx.stack.stub.add_fault), and what its journal and ledger hold
    "Fault",
    "Delay",
    "Dribble",
    "Hang",
    "ErrorStatus",
    "Decline",
    "Reset",
    "LostResponse",
    "Attempt",
    "Charge",
    # The budgets a service is held to: the learner's, the course's example, the bounds
    "Budgets",
    "Retries",
    "RetryBudget",
    "COURSE_RETRIES",
    "COURSE_RETRY_BUDGET",
    "MAX_ATTEMPTS_BOUND",
    "RETRY_RATIO_BOUND",
    # Figures for the evidence: a timeline of attempts, bars of values
    "timeline",
    "bars",
    # Charts: the typed series a verdict's chart is drawn from (Evidence.chart), one per kind
    "Chart",
    "CheckoutTimeline",
    "AttemptSpan",
    "ConnectTimeline",
    "ProbeLatencies",
    "AttemptCounts",
    "RetryStorm",
    "OutageAttempts",
    "LatencyByPhase",
    "PhaseLatency",
    "Percentile",
    "Threshold",
    # Reading the learner's files: budgets.yaml, any file safely, nginx.conf, a loaded YAML file
    "budgets",
    "learnerfile",
    "nginxconf",
    "Loaded",
    # Running k6: its runs, its inspection of a script, its threshold expressions
    "k6",
]
