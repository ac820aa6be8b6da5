"""The token stream under the PromQL parser: one token of lookahead over the lexer, and
errors that point at a position of the query text."""

from __future__ import annotations

from scaler.query.errors import QueryError
from scaler.query.lexer import Lexer
from scaler.query.tokens import T, Token


class TokenStream:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = Lexer(text)
        self.tok = self.lexer.next_token()
        self._ahead: Token | None = None
        self.last_end = 0

    def error(self, pos: int, message: str) -> QueryError:
        return QueryError.at(self.text, pos, message)

    def unexpected(self, context: str = "", expected: str = "") -> QueryError:
        msg = f"unexpected {self.tok.desc()}"
        if context:
            msg += f" in {context}"
        if expected:
            msg += f", expected {expected}"
        return self.error(self.tok.pos, msg)

    def kind(self) -> T:
        """The current token's type (a call, so type checkers re-read it after ``advance``)."""
        return self.tok.type

    def peek(self) -> Token:
        if self._ahead is None:
            self._ahead = self.lexer.next_token()
        return self._ahead

    def advance(self) -> Token:
        tok = self.tok
        self.last_end = tok.end
        if self._ahead is not None:
            self.tok, self._ahead = self._ahead, None
        else:
            self.tok = self.lexer.next_token()
        return tok

    def expect(self, t: T, context: str = "", expected: str = "") -> Token:
        if self.kind() is not t:
            raise self.unexpected(context, expected)
        return self.advance()
