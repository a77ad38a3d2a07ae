"""Bounded CSV reading: blocks of whole records, no line or open quote longer than a limit.

Whatever a file holds (a 50 MB line, a gzip bomb that expands to one 400 MB line, a quote
that never closes), what is held at a time is a block (a few copies of it at most) plus
`MAX_LINE_BYTES`; the rest of a longer line is read past, never kept. A record
that cannot be read (too long, a quote left open past the limit, invalid UTF-8, a bare
carriage return) is rejected with its reason and replaced by blank lines, so every later
line keeps its number and the parser never sees it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from nextoffer.domain.limits import BAD_ENCODING, MAX_LINE_BYTES, TOO_LONG

RAW_PREFIX_BYTES = 4096
"""How much of a line too long to read is kept as its quarantined raw text."""
_SKIP_BYTES = 1 << 20
"""Reads of this size skip the rest of a line too long to keep."""


@dataclass(frozen=True)
class Rejected:
    """A row refused before or during validation: where it was, why, and what it said."""

    line: int
    reason: str
    raw: str


@dataclass(frozen=True)
class Block:
    """Whole lines of a file, rejected records blanked, and what was rejected."""

    data: bytes
    first_line: int
    rejected: list[Rejected]
    bytes_read: int
    plain: bool = False
    """No value can hold a control character or line break: validation may skip that check."""


@dataclass(frozen=True)
class _Line:
    """One physical line; `data` is only its first bytes when `size` is over the limit."""

    data: bytes
    size: int


def _read_line(handle: IO[bytes], limit: int) -> _Line | None:
    """The next line, or None at the end; the rest of a longer one is skipped, not kept."""
    data = handle.readline(limit + 1)
    if not data:
        return None
    size = len(data)
    if size > limit and not data.endswith(b"\n"):
        while more := handle.readline(_SKIP_BYTES):
            size += len(more)
            if more.endswith(b"\n"):
                break
    return _Line(data[:RAW_PREFIX_BYTES] if size > limit else data, size)


def read_blocks(
    handle: IO[bytes], block_bytes: int, first_line: int, limit: int = MAX_LINE_BYTES
) -> Iterator[Block]:
    """Blocks of about `block_bytes` from `handle`, cut at line ends, numbered from `first_line`."""
    number = first_line
    while data := handle.read(block_bytes):
        read = len(data)
        tail: _Line | None = None
        if not data.endswith(b"\n"):
            # Finish the last line, but never read more of it than the limit allows.
            start = data.rfind(b"\n") + 1
            partial = len(data) - start
            rest = handle.readline(limit + 1 - partial) if partial <= limit else b""
            read += len(rest)
            size = partial + len(rest)
            if size > limit:
                end = rest
                while not end.endswith(b"\n") and (more := handle.readline(_SKIP_BYTES)):
                    size += len(more)
                    read += len(more)
                    end = more
                tail = _Line(data[start : start + RAW_PREFIX_BYTES], size)
                data = data[:start]
            else:
                data += rest
        rejected: list[Rejected] = []
        plain = _is_clean(data, limit)
        if plain:
            out, plain = data, not _may_hold_controls(data)
        else:
            sifted = _Sift(handle, number, limit)
            out, rejected = sifted.run(_split(data))
            read += sifted.pulled
        if tail is not None:
            rejected.append(_too_long(number + out.count(b"\n"), tail, limit))
            out += b"\n"
        yield Block(out, number, rejected, read, plain)
        number += out.count(b"\n") + (0 if out.endswith(b"\n") else 1)


def _is_clean(data: bytes, limit: int) -> bool:
    """True when no line needs a closer look: the fast path for ordinary blocks."""
    if not data.isascii():  # ASCII is UTF-8: only other blocks need decoding to check
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    carriage_returns = data.count(b"\r")
    if carriage_returns and carriage_returns != data.count(b"\r\n"):
        return False
    quotes = data.count(b'"')
    if quotes % 2:
        return False
    # Every line (its "\n" included) is at most `limit` bytes: each window of `limit` bytes
    # from a line's start holds its end. A jump per window, not a look at every line.
    start = 0
    while len(data) - start > limit:
        end = data.rfind(b"\n", start, start + limit)
        if end < 0:
            return False
        start = end + 1
    if quotes:
        bytes_ = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(bytes_ == 10)
        # A line with an odd number of quotes starts or ends a multi-line quoted value.
        at = np.flatnonzero(bytes_ == 34)
        if (np.bincount(np.searchsorted(newlines, at)) % 2).any():
            return False
        # A quote that neither starts nor ends a value is a character inside one; such a
        # line is read exactly, line by line, rather than by counting quotes.
        before = np.where(at > 0, bytes_[np.maximum(at - 1, 0)], 10)
        after = np.where(at + 1 < len(bytes_), bytes_[np.minimum(at + 1, len(bytes_) - 1)], 10)
        if not (_EDGE[before] | _EDGE[after]).all():
            return False
    return True


_EDGE = np.zeros(256, dtype=bool)
_EDGE[[10, 13, 34, 44]] = True  # \n \r " ,
"""Bytes next to which a quote opens or closes a value."""

# Printable ASCII, tab and line ends: what is left after deleting them needs a closer look.
_ORDINARY = bytes(range(0x20, 0x7F)) + b"\t\r\n"
_HIGH = bytes(range(0x80, 0x100))


def _may_hold_controls(data: bytes) -> bool:
    """Whether a clean block (one record per line) has a C0/C1 control or DEL in it."""
    rest = data.translate(None, _ORDINARY)
    if not rest:
        return False
    # C1 controls are U+0080-U+009F, encoded as 0xC2 0x80-0x9F; other high bytes are text.
    return bool(rest.translate(None, _HIGH)) or b"\xc2" in rest


def _split(data: bytes) -> deque[_Line]:
    pieces = data.split(b"\n")
    lines = [p + b"\n" for p in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return deque(_Line(line, len(line)) for line in lines)


class _Sift:
    """Line by line through a block with something to reject; one line in, one line out."""

    def __init__(self, handle: IO[bytes], first_line: int, limit: int) -> None:
        self.handle = handle
        self.first_line = first_line
        self.limit = limit
        self.pulled = 0
        self.out: list[bytes] = []
        self.rejected: list[Rejected] = []

    def run(self, queue: deque[_Line]) -> tuple[bytes, list[Rejected]]:
        while queue:
            line = queue.popleft()
            if line.size > self.limit:
                self.rejected.append(_too_long(self._number, line, self.limit))
                self.out.append(b"\n")
                continue
            if not _ends_inside_quotes(line.data):
                self._keep([line])
                continue
            group = self._open_record(line, queue)
            if group is not None:
                self._keep(group)
            else:
                reason = (
                    f"malformed_row: a quote opened on this line is not closed within "
                    f"{self.limit} bytes"
                )
                self._reject([line], reason)
        return b"".join(self.out), self.rejected

    @property
    def _number(self) -> int:
        return self.first_line + len(self.out)

    def _open_record(self, first: _Line, queue: deque[_Line]) -> list[_Line] | None:
        """The lines of a record whose quoted value spans lines, or None if it never closes.

        When it does not close within the limit, the lines after the first go back to be
        read as records of their own: one stray quote costs one line, not the file.
        """
        group, size = [first], first.size
        while (line := queue.popleft() if queue else self._pull()) is not None:
            group.append(line)
            size += line.size
            if size > self.limit:
                break
            if not _ends_inside_quotes(line.data, inside=True):
                return group
        queue.extendleft(reversed(group[1:]))
        return None

    def _pull(self) -> _Line | None:
        """A line beyond the block, read only to finish an open quote."""
        line = _read_line(self.handle, self.limit)
        if line is not None:
            self.pulled += line.size
        return line

    def _keep(self, group: list[_Line]) -> None:
        data = b"".join(line.data for line in group)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = data[exc.start : exc.start + 1].hex()
            reason = f"{BAD_ENCODING}: invalid UTF-8 byte 0x{bad} at position {exc.start}"
            self._reject(group, reason)
            return
        if any(_has_bare_cr(line.data) for line in group):
            self._reject(group, f"{BAD_ENCODING}: a carriage return (CR) inside a line")
            return
        self.out.extend(line.data for line in group)

    def _reject(self, group: list[_Line], reason: str) -> None:
        raw = "\n".join(_text(line.data) for line in group)
        self.rejected.append(Rejected(self._number, reason, raw))
        self.out.extend(b"\n" for _ in group)


def _too_long(number: int, line: _Line, limit: int) -> Rejected:
    reason = (
        f"{TOO_LONG}: the line is {line.size} bytes, longer than {limit} "
        f"(raw text: its first {min(line.size, RAW_PREFIX_BYTES)} bytes)"
    )
    return Rejected(number, reason, _text(line.data[:RAW_PREFIX_BYTES]))


def _text(data: bytes) -> str:
    """A line as text without its line end; undecodable bytes become U+FFFD."""
    return data.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")


def _has_bare_cr(data: bytes) -> bool:
    # A line break is "\n" or "\r\n"; any other CR would split the row for the parser.
    return b"\r" in data.removesuffix(b"\n").removesuffix(b"\r")


def _ends_inside_quotes(line: bytes, inside: bool = False) -> bool:
    """Whether a line ends inside a quoted value, read as the parser reads it.

    `inside`: the line starts inside one (a value continued from the line before). A quote
    opens a value only at the start of a field; inside one, `""` is a quote; after the
    closing quote, anything up to the next comma belongs to the value.
    """
    if b'"' not in line:
        return inside
    text = line.removesuffix(b"\n").removesuffix(b"\r")
    at = 0
    while True:
        if inside:
            quote = text.find(b'"', at)
            if quote < 0:
                return True
            if text[quote + 1 : quote + 2] == b'"':
                at = quote + 2
                continue
            inside, at = False, quote + 1
        elif text[at : at + 1] == b'"':
            inside, at = True, at + 1
            continue
        comma = text.find(b",", at)
        if comma < 0:
            return False
        at = comma + 1
