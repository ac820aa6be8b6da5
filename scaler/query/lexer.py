"""PromQL lexer: turns query text into :class:`Token` s on demand.

It follows Prometheus' lexer (``promql/parser/lex.go``) closely, including its context
sensitivity: inside ``{...}`` keywords are plain identifiers, inside ``[...]`` only durations,
numbers and ``:`` are expected, and identifiers outside braces may contain ``:``
(``vllm:num_requests_waiting``). Errors carry Prometheus' messages and positions.
"""

from __future__ import annotations

from scaler.query.errors import QueryError
from scaler.query.tokens import WORDS, T, Token, go_quote, go_quote_rune

_SPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"


def _is_alpha(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_alnum(c: str) -> bool:
    return _is_alpha(c) or ("0" <= c <= "9")


class Lexer:
    """Produces tokens one at a time (Prometheus reports the *first* error, which may be a
    parse error before a later lexical one, so lexing must be lazy)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.paren_depth = 0
        self.brace_open = False
        self.bracket_open = False

    def error(self, pos: int, message: str) -> QueryError:
        return QueryError.at(self.text, pos, message)

    def _peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.text[i] if i < len(self.text) else ""

    def next_token(self) -> Token:
        text = self.text
        n = len(text)
        while True:
            while self.pos < n and text[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < n and text[self.pos] == "#":
                while self.pos < n and text[self.pos] not in "\r\n":
                    self.pos += 1
                continue
            break
        start = self.pos
        if self.brace_open:
            return self._inside_braces(start)
        if self.bracket_open:
            return self._inside_brackets(start)
        if start >= n:
            if self.paren_depth != 0:
                raise self.error(start, "unclosed left parenthesis")
            return Token(T.EOF, "", start)
        c = text[start]
        self.pos += 1
        two = text[start : start + 2]
        simple = {",": T.COMMA, "*": T.MUL, "/": T.DIV, "%": T.MOD, "+": T.ADD, "-": T.SUB, "^": T.POW, "@": T.AT}
        if c in simple:
            return Token(simple[c], c, start)
        if c == "=":
            if two == "==":
                self.pos += 1
                return Token(T.EQLC, two, start)
            if two == "=~":
                raise self.error(start, "unexpected character after '=': '~'")
            return Token(T.EQL, c, start)
        if c == "!":
            if two != "!=":
                raise self.error(start, f"unexpected character after '!': {go_quote_rune(two[1:])}")
            self.pos += 1
            return Token(T.NEQ, two, start)
        if c in "<>":
            if two in ("<=", ">="):
                self.pos += 1
                return Token(T.LTE if c == "<" else T.GTE, two, start)
            return Token(T.LSS if c == "<" else T.GTR, c, start)
        if c in _DIGITS or (c == "." and self._peek() in tuple(_DIGITS)):
            self.pos = start
            return self._number_or_duration(start)
        if c in "\"'":
            return self._string(start, c)
        if c == "`":
            return self._raw_string(start)
        if _is_alpha(c) or c == ":":
            return self._word(start)
        if c == "(":
            self.paren_depth += 1
            return Token(T.LEFT_PAREN, c, start)
        if c == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                raise self.error(start, "unexpected right parenthesis ')'")
            return Token(T.RIGHT_PAREN, c, start)
        if c == "{":
            self.brace_open = True
            return Token(T.LEFT_BRACE, c, start)
        if c == "[":
            self.bracket_open = True
            return Token(T.LEFT_BRACKET, c, start)
        if c == "]":
            raise self.error(start, "unexpected right bracket ']'")
        raise self.error(start, f"unexpected character: {go_quote_rune(c)}")

    def _inside_braces(self, start: int) -> Token:
        text = self.text
        if start >= len(text):
            raise self.error(start, "unexpected end of input inside braces")
        c = text[start]
        self.pos += 1
        if _is_alpha(c):
            while self.pos < len(text) and _is_alnum(text[self.pos]):
                self.pos += 1
            return Token(T.IDENTIFIER, text[start : self.pos], start)
        if c == ",":
            return Token(T.COMMA, c, start)
        if c in "\"'":
            return self._string(start, c)
        if c == "`":
            return self._raw_string(start)
        if c == "=":
            if self._peek() == "~":
                self.pos += 1
                return Token(T.EQL_REGEX, "=~", start)
            return Token(T.EQL, c, start)
        if c == "!":
            nxt = self._peek()
            if nxt == "~":
                self.pos += 1
                return Token(T.NEQ_REGEX, "!~", start)
            if nxt == "=":
                self.pos += 1
                return Token(T.NEQ, "!=", start)
            raise self.error(start, f"unexpected character after '!' inside braces: {go_quote_rune(nxt)}")
        if c == "{":
            raise self.error(start, "unexpected left brace '{'")
        if c == "}":
            self.brace_open = False
            return Token(T.RIGHT_BRACE, c, start)
        raise self.error(start, f"unexpected character inside braces: {go_quote_rune(c)}")

    def _inside_brackets(self, start: int) -> Token:
        text = self.text
        if start >= len(text):
            raise self.error(start, "unexpected end of input in duration expression")
        c = text[start]
        self.pos += 1
        if c == "]":
            self.bracket_open = False
            return Token(T.RIGHT_BRACKET, c, start)
        if c == ":":
            return Token(T.COLON, c, start)
        if c in _DIGITS or (c == "." and self._peek() in tuple(_DIGITS)):
            self.pos = start
            return self._number_or_duration(start)
        ops = {"+": T.ADD, "-": T.SUB, "*": T.MUL, "/": T.DIV, "%": T.MOD, "^": T.POW, ",": T.COMMA}
        if c in ops:
            return Token(ops[c], c, start)
        if c == "(":
            self.paren_depth += 1
            return Token(T.LEFT_PAREN, c, start)
        if c == ")":
            self.paren_depth -= 1
            return Token(T.RIGHT_PAREN, c, start)
        if _is_alpha(c):
            while self.pos < len(text) and _is_alnum(text[self.pos]):
                self.pos += 1
            return Token(T.IDENTIFIER, text[start : self.pos], start)
        raise self.error(start, f"unexpected character in duration expression: {go_quote_rune(c)}")

    def _word(self, start: int) -> Token:
        text = self.text
        while self.pos < len(text) and (_is_alnum(text[self.pos]) or text[self.pos] == ":"):
            self.pos += 1
        word = text[start : self.pos]
        low = word.lower()
        if low in ("inf", "nan"):
            return Token(T.NUMBER, word, start)
        kw = WORDS.get(low)
        if kw is not None:
            return Token(kw, word, start)
        return Token(T.METRIC_IDENTIFIER if ":" in word else T.IDENTIFIER, word, start)

    def _accept(self, valid: str) -> bool:
        if self.pos < len(self.text) and self.text[self.pos] in valid:
            self.pos += 1
            return True
        return False

    def _scan_number(self) -> bool:
        initial = self.pos
        digits = _DIGITS
        if self._peek() == "0" and self._peek(1) in ("x", "X"):
            self.pos += 2
            self._accept("_")
            digits = _HEX
        self._accept(".")
        self._accept(digits)
        dot = exp = False
        while self._peek() != "" and self._peek() in digits + "._eE":
            c = self._peek()
            if c == "." and dot:
                self.pos += 1
                return False
            if c in "eE" and exp:
                self.pos += 1
                return False
            if self._accept("."):
                dot = True
                if self._accept("_.") or digits is _HEX:
                    return False
                continue
            if self._accept("eE"):
                exp = True
                self._accept("+-")
                if self._accept("._eE") or self._peek() == "":
                    return False
                continue
            if self._accept("_"):
                if self._accept("._eE") or self._peek() == "":
                    return False
                continue
            while self._accept(digits):
                pass
        if self.pos == initial:
            return False
        return not _is_alnum(self._peek())

    def _number_or_duration(self, start: int) -> Token:
        if self._scan_number():
            return Token(T.NUMBER, self.text[start : self.pos], start)
        if self._remaining_duration():
            return Token(T.DURATION, self.text[start : self.pos], start)
        end = min(self.pos + 1, len(self.text))
        raise self.error(start, f"bad number or duration syntax: {go_quote(self.text[start:end])}")

    def _remaining_duration(self) -> bool:
        if not self._accept("smhdwy"):
            return False
        self._accept("s")
        while self._accept(_DIGITS):
            while self._accept(_DIGITS):
                pass
            if not self._accept("smhdw"):
                return False
            self._accept("s")
        return not _is_alnum(self._peek())

    def _string(self, start: int, quote: str) -> Token:
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error(start, "unterminated quoted string")
            c = text[self.pos]
            self.pos += 1
            if c == "\\":
                self._escape(start, quote)
            elif c == quote:
                return Token(T.STRING, text[start : self.pos], start)

    def _escape(self, start: int, quote: str) -> None:
        c = self._peek()
        if c == "":
            raise self.error(start, "escape sequence not terminated")
        self.pos += 1
        if c in "abfnrtv\\" or c == quote:
            return
        if c in "01234567":
            n, base, maxval = 2, 8, 255
        elif c in "xuU":
            n, base, maxval = {"x": 2, "u": 4, "U": 8}[c], 16, (255 if c == "x" else 0x10FFFF)
            n -= 1
            c = self._peek()
            self.pos += 1
        else:
            raise self.error(start, f"unknown escape sequence U+{ord(c):04X} {go_quote_rune(c)}")
        value = 0
        while True:
            digit = int(c, 16) if c != "" and c in _HEX else 16
            if digit >= base:
                if c == "":
                    raise self.error(start, "escape sequence not terminated")
                raise self.error(start, f"illegal character U+{ord(c):04X} {go_quote_rune(c)} in escape sequence")
            value = value * base + digit
            if n == 0:
                break
            n -= 1
            c = self._peek()
            self.pos += 1
        if value > maxval or 0xD800 <= value < 0xE000:
            raise self.error(start, "escape sequence is an invalid Unicode code point")

    def _raw_string(self, start: int) -> Token:
        end = self.text.find("`", self.pos)
        if end < 0:
            raise self.error(start, "unterminated raw string")
        self.pos = end + 1
        return Token(T.STRING, self.text[start : self.pos], start)
