"""Bounded CSV reading: what is rejected, on which line, whatever the block size."""

from __future__ import annotations

import io

import pytest

from nextoffer.ingest.lines import _ends_inside_quotes, read_blocks

LIMIT = 64
LINES = [
    b"a,b,c\n",  # 2
    b"x" * 80 + b"\n",  # 3: longer than the limit
    b'd,"e\n',  # 4: a quote that never closes within the limit...
    b"f,g,h\n",  # 5: ...so these are read as rows of their own
    b"i,j,k\n" * 10,  # 6-15
    b"l,m\rn,o\n",  # 16: a carriage return inside a line
    b"p,\xe9,q\n",  # 17: not UTF-8
    b'r,"multi\n',  # 18: a quoted value over two lines is one record
    b'line",s\n',  # 19
    b't,5" screen,u\n',  # 20: a quote inside an unquoted value is a character
    b"v,w," + b"y" * 100,  # 21: too long, and the last line has no line end
]
DATA = b"".join(LINES)


def read(block_bytes: int) -> tuple[list[tuple[int, str]], list[str]]:
    """(line, reason code) of every rejection, and every kept line with its number."""
    rejected: list[tuple[int, str]] = []
    kept: list[str] = []
    for block in read_blocks(io.BytesIO(DATA), block_bytes, first_line=2, limit=LIMIT):
        rejected += [(r.line, r.reason.split(":")[0]) for r in block.rejected]
        lines = block.data.decode().split("\n")
        kept += [f"{block.first_line + i}:{line}" for i, line in enumerate(lines) if line]
    return sorted(rejected), kept


def test_each_unreadable_line_is_rejected_on_its_own_line() -> None:
    rejected, kept = read(1 << 20)
    assert rejected == [
        (3, "too_long"),
        (4, "malformed_row"),
        (16, "bad_encoding"),
        (17, "bad_encoding"),
        (21, "too_long"),
    ]
    assert kept == [
        "2:a,b,c",
        "5:f,g,h",
        *[f"{n}:i,j,k" for n in range(6, 16)],
        '18:r,"multi',
        '19:line",s',
        '20:t,5" screen,u',
    ]


@pytest.mark.parametrize("block_bytes", [1, 7, 16, 50, 100])
def test_small_blocks_reject_and_keep_the_same_lines(block_bytes: int) -> None:
    assert read(block_bytes) == read(1 << 20)


def test_nothing_longer_than_the_limit_is_kept_whatever_the_block() -> None:
    for block_bytes in (1, 16, 1 << 20):
        blocks = read_blocks(io.BytesIO(DATA), block_bytes, first_line=2, limit=LIMIT)
        for block in blocks:
            assert all(len(line) <= LIMIT for line in block.data.split(b"\n"))
            assert all(len(r.raw) <= 4096 for r in block.rejected)


@pytest.mark.parametrize(
    ("line", "inside", "ends_inside"),
    [
        (b"a,b\n", False, False),
        (b'a,"b\n', False, True),
        (b'a,5" x\n', False, False),  # not at the start of a field: a character
        (b'5" x,"y\n', False, True),
        (b'"a""b",c\n', False, False),  # "" inside quotes is a quote
        (b'"a""b,c\n', False, True),
        (b'"ab"cd,"e\n', False, True),
        (b'x",y\n', True, False),  # continuing a value: its closing quote
        (b'x""y\n', True, True),
        (b'"\n', False, True),
        (b'""\n', False, False),
    ],
)
def test_quotes_are_read_as_the_parser_reads_them(
    line: bytes, inside: bool, ends_inside: bool
) -> None:
    assert _ends_inside_quotes(line, inside) is ends_inside
