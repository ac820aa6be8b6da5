"""The one error type of the query layer.

A :class:`QueryError` is either a *parse* error, which knows where in the query text it
happened (``line``/``col``, 1-based, as Prometheus reports them), or an *evaluation* error,
which has no position. ``kind`` tells them apart for the HTTP API as Prometheus maps them:
``bad_data`` → 400, ``execution`` → 422, ``timeout`` → 503.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["bad_data", "execution", "timeout"]


class QueryError(Exception):
    """A query could not be parsed or evaluated.

    ``str(err)`` is Prometheus' text: ``1:17: parse error: unexpected "}"`` for parse errors,
    the bare message for evaluation errors.
    """

    def __init__(
        self,
        message: str,
        line: int | None = None,
        col: int | None = None,
        *,
        kind: ErrorKind = "bad_data",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.kind: ErrorKind = kind

    @classmethod
    def at(cls, text: str, offset: int, message: str) -> QueryError:
        """A parse error at character ``offset`` of ``text``."""
        offset = max(0, min(offset, len(text)))
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return cls(message, line, col)

    @classmethod
    def execution(cls, message: str) -> QueryError:
        return cls(message, kind="execution")

    @classmethod
    def timeout(cls) -> QueryError:
        """Prometheus' text for a query past its deadline."""
        return cls("query timed out in expression evaluation", kind="timeout")

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.line}:{self.col}: parse error: {self.message}"

    def __repr__(self) -> str:
        return f"QueryError({str(self)!r})"
