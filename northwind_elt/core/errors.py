"""The one error type of the project: every failure names its step, its day and the fix."""

from __future__ import annotations

import datetime as dt


def rerun_command(step: str, day: dt.date | str) -> str:
    """The command that reruns the day from `step`; the same locally and in Docker."""
    iso = day.isoformat() if isinstance(day, dt.date) else day
    return f"nw run --date {iso} --from {step}"


class PipelineError(RuntimeError):
    """A step of a day failed. `cause` says what happened, `fix` what to do about it.

    The message always ends with the command to run once the cause is fixed (by default,
    rerun from this step).
    """

    def __init__(
        self,
        step: str,
        day: dt.date | str | None,
        cause: str,
        fix: str | None = None,
        *,
        rerun_from: str | None = None,
    ) -> None:
        self.step = step
        self.day = day.isoformat() if isinstance(day, dt.date) else day
        self.cause = cause
        self.fix = fix
        self.rerun_from = rerun_from or step
        super().__init__(self.message)

    @property
    def rerun(self) -> str | None:
        return rerun_command(self.rerun_from, self.day) if self.day else None

    @property
    def leading_fix(self) -> str | None:
        """The fix, led by the command that starts the server the cause could not reach when it is
        one of the project's local stand-ins (checking settings that are right would go in a circle)."""
        from northwind_elt.core.settings import stand_in_fix

        start = stand_in_fix(self.cause)
        if start is None or (self.fix and start.rsplit(": ", 1)[1] in self.fix):
            return self.fix
        return f"{start}; if it runs: {self.fix}" if self.fix else start

    @property
    def message(self) -> str:
        where = f"{self.step} for {self.day}" if self.day else self.step
        # A cause that already names the step ("load refused for D: ...") needs no prefix.
        parts = [self.cause if self.cause.startswith(f"{self.step} ") else f"{where}: {self.cause}"]
        if fix := self.leading_fix:
            parts.append(f"Fix: {fix}")
        if self.rerun:
            parts.append(f"Then rerun: {self.rerun}")
        return "\n".join(parts)


class CommandError(PipelineError):
    """A command outside the daily steps (PADAM, ads) failed; it names its own next command."""

    def __init__(
        self, step: str, day: dt.date | str | None, cause: str, fix: str | None = None, rerun: str | None = None
    ) -> None:
        self._rerun = rerun
        super().__init__(step, day, cause, fix)

    @property
    def rerun(self) -> str | None:
        return self._rerun


class ConfigError(PipelineError):
    """The environment or configuration is wrong; nothing was started."""

    def __init__(self, cause: str, fix: str, step: str = "setup", day: dt.date | str | None = None) -> None:
        super().__init__(step, day, cause, fix)

    @property
    def rerun(self) -> str | None:
        return None
