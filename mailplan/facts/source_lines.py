"""How passwd and shadow are read line by line: as the old server's C library reads them.

glibc's nss_files (``__nss_readline``, behind getpwnam and getspnam, which PAM's
pam_unix and login(1) ask) skips a line that is empty or a ``#`` comment after its
leading white space: no account is there, so mailplan skips it too and the plan says so
(:func:`source_notes`, with ``plan -v``), as it says which shadow lines had missing
trailing fields read as empty. Every other line is read exactly (:func:`lines`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mailplan.errors import SourceDataError

if TYPE_CHECKING:
    from mailplan.facts.source import ShadowEntry

#: what C's isspace() takes for white space (glibc's nss_files skips it at a line's start)
C_SPACE = b" \t\n\v\f\r"


def _split(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # after the final newline
    return lines


def _skipped(raw: bytes) -> str | None:
    """Why glibc's nss_files skips this line (``__nss_readline``: empty, or a ``#``
    comment, after its leading white space), or None: it is read."""
    text = raw.lstrip(C_SPACE)
    return "empty" if not text else "a comment" if text.startswith(b"#") else None


def skipped_lines(data: bytes) -> list[tuple[int, str]]:
    """The lines of a passwd or shadow file its C library skips (no account is there):
    ``(line, "empty" | "a comment")``."""
    return [(number, why) for number, raw in enumerate(_split(data), start=1)
            if (why := _skipped(raw))]


def lines(data: bytes, host: str, path: str, *, gecos: int | None = None
          ) -> list[tuple[int, str]]:
    """The file's lines the C library reads (:func:`skipped_lines` left out) as UTF-8
    text; a line that is not is an error naming it, except in its ``gecos`` field
    (passwd's full name: old systems wrote it in their locale's 8-bit charset), which is
    then read as Latin-1. Every other field (a name, a home directory) is sent back to
    the host as it is, so it must be read exactly. A line starting with white space is
    an error: glibc reads its account without it, shadow's tools (passwd, usermod)
    with it in the name."""
    out = []
    for number, raw in enumerate(_split(data), start=1):
        if _skipped(raw):
            continue
        if raw[0] in C_SPACE:
            raise SourceDataError("the line starts with white space (the C library reads "
                                  "its name without it, shadow's tools with it): remove it",
                                  host=host, path=path, line=number)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            fields = raw.split(b":")
            try:
                line = ":".join(f.decode("latin-1" if i == gecos else "utf-8")
                                for i, f in enumerate(fields))
            except UnicodeDecodeError:
                raise SourceDataError("not UTF-8 text" + (
                    " (outside the full name)" if gecos is not None else ""),
                    host=host, path=path, line=number) from None
        out.append((number, line))
    return out


def source_notes(passwd_path: str, passwd: bytes, shadow_path: str, shadow: bytes,
                 entries: Mapping[str, ShadowEntry]) -> list[str]:
    """The plan's notes on how passwd and shadow were read where a line is not a whole
    account line: each file's lines skipped (:func:`skipped_lines`), then each shadow
    line whose missing fields were read as empty (its account named, nothing else)."""
    notes = []
    for path, data in ((passwd_path, passwd), (shadow_path, shadow)):
        by_kind: dict[str, list[int]] = {}
        for number, why in skipped_lines(data):
            by_kind.setdefault(why, []).append(number)
        if by_kind:
            said = ", ".join(
                f"{_ranges(lines)} ({'comments' if len(lines) > 1 and why == 'a comment' else why})"
                for why, lines in by_kind.items())
            count = sum(len(lines) for lines in by_kind.values())
            notes.append(f"{path} line{'s' if count > 1 else ''} {said}: skipped, as the "
                         "old server's C library skips them (glibc's nss_files: no account "
                         "is there)")
    for name, entry in sorted(entries.items(), key=lambda item: item[1].line):
        where = f"{shadow_path} line {entry.line} ({name!r}): {entry.found} fields"
        if entry.found in (5, 6):
            notes.append(f"{where}, shadow's old form: its warning, inactivity and expiry "
                         "fields are read as empty, as the C library reads them")
        elif entry.found == 8:
            notes.append(f"{where}: its last (reserved) field is read as empty, as the C "
                         "library reads it")
    return notes


def _ranges(numbers: list[int]) -> str:
    """``1, 5-6, 9`` of line numbers in order."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and spans[-1][1] == n - 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
