"""The grader's one error tree.

Every error the grader raises on purpose derives from ``FailfastError``::

    FailfastError
    ├── GradingError            the grader could not grade: exit code 2, never the learner's score
    │   ├── RepoError           the learner repo is missing or is not a directory
    │   ├── ManifestError       failfast.yaml cannot be read or is invalid
    │   ├── BudgetsError        budgets.yaml cannot be used to hold the service to
    │   ├── ApiStartError       the learner's API exited or never answered /healthz
    │   ├── LearnerFileError    a learner's file that is not a regular file in the repo, too big,
    │   │                       or not UTF-8 (grader/learner/learnerfile.py)
    │   ├── ImageBuildError     the learner's Dockerfile cannot give an image to run (docker
    │   │                       backend): a failed or endless build, a context too big, no CMD
    │   ├── CourseError         the course file (--course) cannot be read or is invalid
    │   ├── UnknownBackend      --backend names no backend of the registry
    │   └── EnvironmentProblem  this machine lacks something (a free port, a tool, the stub)
    │       ├── ToolTimeout     a tool the grader runs (k6) did not finish within its limit
    │       └── ImportsRefused  a k6 script importing a module from the network, refused before
    │                           k6 starts (engine/k6imports.py); m1.k6-thresholds: its FAIL
    ├── NginxConfError          a learner's nginx.conf nginx would reject (learner/nginxconf.py);
    │                           m1.nginx-agrees turns it into its FAIL
    ├── EdgeUnavailable         the learner's nginx cannot run here (no nginx binary): the check
    │   │                       that needs it is SKIP, with the reason, not the learner's fault
    │   └── NginxFormUnsupported  a form of nginx.conf the local backend cannot rewire, with its
    │                           file:line (learner/nginxroute.py): SKIP as well
    ├── HistoryError            the grading history (--db) cannot be opened, read or written
    │                           (grader/history): named with its URL, never the grading's end
    └── CheckVerdict            raised inside a check, with the evidence
        ├── CheckFailed         the learner's service did the wrong thing
        ├── CheckInconclusive   the machine was too noisy to tell right from wrong
        └── CheckSkipped        the check cannot run here, through nobody's fault

Third-party errors (yaml, jsonschema, httpx, crossplane, docker with the requests and urllib3
under it, OSError, k6's processes) are translated into these at the boundary where they happen,
so the CLI catches ``GradingError`` alone and prints its one paragraph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from grader.model import Evidence, Location, NotGraded


class FailfastError(Exception):
    """Base of every error the grader raises on purpose."""


class GradingError(FailfastError):
    """The grader could not grade; the message is one paragraph a learner can act on."""

    def __init__(
        self, message: str, *, details: Sequence[str] = (), location: Location | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # Supporting lines shown under the paragraph, e.g. the API's last output lines.
        self.details = tuple(details)
        # The learner's file at fault, when there is one (CI annotates it).
        self.location = location

    def not_graded(self) -> NotGraded:
        """This error as a value every report format renders."""
        return NotGraded(type(self).__name__, self.message, self.details, self.location)


class RepoError(GradingError):
    """The learner repo is missing or is not a directory."""


class ManifestError(GradingError):
    """failfast.yaml cannot be read or does not match its schema."""


class BudgetsError(GradingError):
    """budgets.yaml cannot be used to hold the service to."""


class ApiStartError(GradingError):
    """The learner's API exited before it was ready, or never answered GET /healthz."""


class ImageBuildError(GradingError):
    """The learner's Dockerfile gives no image to run.

    A base image missing, a step failing, a build outlasting its limit, a build context too big
    to send, or an image with no command (no CMD, no ENTRYPOINT).
    """


class UnknownBackend(GradingError):
    """--backend (or FAILFAST_BACKEND) names no backend of the registry."""


class CourseError(GradingError):
    """The course file (points and visibility, ``--course``) cannot be read or is invalid."""


class HistoryError(FailfastError):
    """The grading history cannot be used; the message names its URL, password hidden.

    Never a grading's failure: the reports are written and the exit code is the grading's.
    """


class EdgeUnavailable(FailfastError):
    """The learner's nginx cannot run under this backend here; the message says why."""


class EnvironmentProblem(GradingError):
    """This machine lacks something the grader needs: never the learner's fault."""


class ToolTimeout(EnvironmentProblem):
    """A tool the grader runs did not finish within its limit.

    Whose fault that is depends on whose input it ran: a check running the learner's own script
    turns it into a FAIL; on the grader's own input it stays an environment problem.
    """

    def __init__(self, tool: str, limit_s: float) -> None:
        super().__init__(
            f"`{tool}` did not finish within its limit of {limit_s:g} s: the machine may be "
            f"overloaded. Grade again, and report it if it persists."
        )
        self.tool, self.limit_s = tool, limit_s


class CheckVerdict(FailfastError):
    """Raised by a check to end it with a verdict other than PASS, and the evidence for it.

    The keywords are those of :class:`grader.model.Evidence`, which the verdict carries.
    """

    def __init__(
        self,
        summary: str,
        *,
        measured: str = "",
        expected: str = "",
        hint: str | None = None,
        data: Mapping[str, Any] | None = None,
        figure: Sequence[str] = (),
        location: Location | None = None,
    ) -> None:
        super().__init__(summary)
        self.evidence = Evidence(
            summary,
            measured=measured,
            expected=expected,
            hint=hint or "",
            data=data or {},
            figure=tuple(figure),
            location=location,
        )


class CheckFailed(CheckVerdict):
    """The learner's service did the wrong thing."""


class CheckInconclusive(CheckVerdict):
    """Noise alone could explain what was measured: neither PASS nor FAIL would be honest."""


class CheckSkipped(CheckVerdict):
    """The check cannot run here (a tool missing), through no fault of the learner's."""
