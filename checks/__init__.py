"""The milestone checks: ``m<N>.<name>`` lives in ``checks/m<N>_*.py`` as ``def <name>``."""

from checks import (
    lt_loadtest,
    m1_budget_table,
    m2_timeouts,
    m3_retries,
    m4_retry_budget,
    m5_idempotency,
)

__all__ = [
    "lt_loadtest",
    "m1_budget_table",
    "m2_timeouts",
    "m3_retries",
    "m4_retry_budget",
    "m5_idempotency",
]
