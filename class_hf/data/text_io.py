"""The one reader of delimited text files (ChEBI-20 layouts, molecule libraries, CID/SMILES tables).

Every text file class-hf reads goes through :func:`open_text`, so they all behave alike:

- UTF-8, with or without a byte-order mark (``utf-8-sig``: Excel and many Windows tools write one);
- bytes that are not UTF-8 raise a ``ValueError`` naming the file, the line and the offending byte, instead of a bare
  ``UnicodeDecodeError`` from somewhere inside the ``csv`` module;
- ``newline=""`` as the ``csv`` module requires, so quoted fields may hold line breaks.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["ENCODING", "first_line", "iter_records", "not_utf8_error", "open_text"]

ENCODING = "utf-8-sig"  # UTF-8; a leading byte-order mark is dropped


def not_utf8_error(path: str | os.PathLike) -> ValueError:
    """A ``ValueError`` naming the first line of ``path`` that is not valid UTF-8, and what to do about it."""
    path = Path(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return ValueError(
                    f"{path}, line {number}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}). "
                    "Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.tsv > out.tsv` for a Latin-1 file)."
                )
    return ValueError(f"{path}: not UTF-8 text. Save the file as UTF-8.")


@contextlib.contextmanager
def open_text(path: str | os.PathLike) -> Iterator[TextIO]:
    """Opens a text file for reading as UTF-8 (a byte-order mark is dropped).

    A ``UnicodeDecodeError`` raised while the file is read inside the ``with`` block becomes a ``ValueError`` that
    names the file and the line (see :func:`not_utf8_error`).

    Args:
        path (str | os.PathLike): the file.

    Yields:
        TextIO: the open file, with ``newline=""`` (ready for :mod:`csv`).
    """
    try:
        with open(path, encoding=ENCODING, newline="") as f:
            yield f
    except UnicodeDecodeError as err:
        raise not_utf8_error(path) from err


def first_line(path: str | os.PathLike) -> str:
    """The first line of a text file, without its line ending ("" for an empty file)."""
    with open_text(path) as f:
        return f.readline().rstrip("\r\n")


def iter_records(path: str | os.PathLike, *, delimiter: str, quoting: int) -> Iterator[tuple[int, list[str]]]:
    """The records of a delimited file, blank lines skipped.

    The file is parsed strictly: a quoted field that is never closed, or text after a closing quote, is an error
    instead of a field that silently swallows the lines that follow it.

    Args:
        path (str | os.PathLike): the file.
        delimiter (str): ``","`` or ``"\\t"``.
        quoting (int): a :mod:`csv` quoting constant (``csv.QUOTE_NONE`` for ChEBI-20's TSV files, whose
            descriptions hold bare quotes; ``csv.QUOTE_MINIMAL`` for RFC-4180 CSV).

    Yields:
        tuple[int, list[str]]: the 1-based line where the record ends, and its fields.

    Raises:
        ValueError: a malformed quoted field, named by the file and the line where its record starts.
    """
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise ValueError(
                    f"{path}, line {start}: malformed quoting ({err}; the record runs to line {reader.line_num}). "
                    "A field that starts with a double quote must end with one, and a double quote inside a quoted "
                    'field is written twice ("").'
                ) from None
            if fields:
                yield reader.line_num, fields
