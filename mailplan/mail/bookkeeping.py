"""Mbox bookkeeping headers: the mail readers' per-message state, turned into Maildir state.

:class:`mailplan.mail.mbox.MboxReader` passes each message's header block to
:func:`split_bookkeeping`, stores the bytes it keeps and turns the state it returns into a
Maildir flag string and subdirectory with :func:`maildir_flags`.

Rules
-----

**Bookkeeping headers** ``Status``, ``X-Status``, ``X-Keywords``, ``X-UID``, ``X-IMAP``,
``X-IMAPbase`` and ``Content-Length`` (with their continuation lines) are removed from the
stored bytes, in the header block only; every other byte of the message is kept
identical. The first three become Maildir state (flags and keywords, below); UW-IMAP's
UIDs (``X-UID``, ``X-IMAPbase``) are not carried: the new IMAP server numbers the
messages itself (the README says why). A ``Content-Length`` whose value is not ASCII
digits (``\xb2``, the latin-1 superscript two, is not a digit here) is removed and
ignored.

**Flags.** Status ``R`` -> ``S`` (seen); X-Status ``A`` -> ``R`` (replied), ``F`` -> ``F``
(flagged), ``D`` -> ``T`` (trashed), ``T`` -> ``D`` (draft); sorted ASCII. A message goes
to ``new/`` when its Status has no ``O`` (never seen by a mail reader) *and* it has no flag
and no keyword; otherwise to ``cur/`` (a file in new/ cannot carry flags, so a flag is never
dropped).

**Keywords.** ``X-Keywords`` (UW-IMAP's IMAP keywords, e.g. ``$Label1 Junk``) become the
message's IMAP keywords the way dovecot keeps them in a Maildir: each keyword of a folder
has a letter ``a``-``z`` (its line ``N name`` in the folder's ``dovecot-keywords``, which
the writer extends), and the letters follow the flags in the file name (``:2,Sab``); the
writer also gives courier-imap the same keywords, in the folder's ``courierimapkeywords/``
(see the agent's ``K``). A keyword that is not an IMAP atom, or past a folder's 26, is
not carried: the import counts the messages that lose one (:class:`KeywordLoss`), and
apply says so for the mailbox.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailplan.text import is_number

BOOKKEEPING = frozenset(
    {b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase",
     b"content-length"})


@dataclass(slots=True)
class _State:
    status: str = ""
    xstatus: str = ""
    keywords: list[str] = field(default_factory=list)
    content_length: int | None = None
    imap: bool = False


# A field is matched with the line end before it, searched in "\n" + the block: a pattern
# that starts with a literal is scanned by sre's fast prefix search, five times faster
# than ^ in MULTILINE mode (tried at every byte); this runs for every message.
_BOOK_FIELD = re.compile(
    rb"\n(?=[SsXxCc])(status|x-status|x-keywords|x-uid|x-imap|x-imapbase|content-length)"
    rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.I)
_SUBJECT = re.compile(rb"^subject[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


def subject(headers: bytes) -> bytes:
    """The first Subject of a header block, stripped (``b""`` when there is none)."""
    m = _SUBJECT.search(headers)
    return b"" if m is None else m[1].strip()


def split_bookkeeping(headers: bytes) -> tuple[bytes, _State]:
    """Remove the bookkeeping fields from a header block; return kept bytes and their state."""
    state = _State()
    kept: list[bytes] = []
    last = 0
    padded = b"\n" + headers
    for m in _BOOK_FIELD.finditer(padded):
        # removed: the field from its first byte through its line end (when it has one)
        end = m.end()
        kept.append(headers[last:m.start()])
        last = end if padded[end:end + 1] == b"\n" else end - 1
        name = m[1].lower()
        value = " ".join(m[2].decode("latin-1").split())  # whitespace runs -> one space
        if name == b"status":
            state.status += value
        elif name == b"x-status":
            state.xstatus += value
        elif name == b"x-keywords":
            state.keywords += [k for k in re.split(r"[\s,]+", value) if k]
        elif name == b"content-length" and is_number(value):
            # ASCII digits only (str.isdigit() also accepts "\xb2", the latin-1
            # superscript two, which int() refuses); any other value is ignored
            state.content_length = int(value)
        elif name in (b"x-imap", b"x-imapbase"):
            state.imap = True
    if last == 0:
        return headers, state
    kept.append(headers[last:])
    return b"".join(kept), state


#: an IMAP keyword (an atom, not a system flag): what X-Keywords may carry into a name
KEYWORD = re.compile(r"[A-Za-z0-9$!#&'+\-.:;<=>?@^_`|~/]{1,64}")


def carried_keywords(keywords: tuple[str, ...] | list[str]) -> frozenset[str]:
    """The keywords of a message an import carries: those that are IMAP atoms (of
    those, a folder holds 26 at most: one a letter in its ``dovecot-keywords``)."""
    return frozenset(k for k in keywords if KEYWORD.fullmatch(k))


#: a Maildir folder's keywords: a letter each, ``a``-``z`` (dovecot-keywords)
MAX_KEYWORDS = 26
_NAMED = 5  # keywords a loss names for each reason; the rest are counted in "and more"


@dataclass
class KeywordLoss:
    """The IMAP keywords an import could not carry: how many messages lost one, and the
    first few keywords for each reason (not an IMAP atom; no letter left in the folder),
    with whether there were more. Memory stays small whatever the mailbox."""

    messages: int = 0
    not_atoms: list[str] = field(default_factory=list)
    no_letter: list[str] = field(default_factory=list)
    #: the lists that are full while more keywords were lost for their reason
    more: set[str] = field(default_factory=set)

    def add(self, lost: Iterable[str]) -> None:
        """One message's keywords that got no letter."""
        self.messages += 1
        for keyword in lost:
            reason = "no_letter" if KEYWORD.fullmatch(keyword) else "not_atoms"
            named = getattr(self, reason)
            if keyword in named:
                continue
            if len(named) < _NAMED:
                named.append(keyword)
            else:
                self.more.add(reason)

    def text(self) -> str:
        """The operator's line (empty when no message lost a keyword)."""
        if not self.messages:
            return ""
        why = [f"{label}: {', '.join(getattr(self, reason))}"
               + (" and more" if reason in self.more else "")
               for reason, label in (
                   ("no_letter", f"past the folder's {MAX_KEYWORDS} (dovecot-keywords "
                                 "letters a-z)"),
                   ("not_atoms", "not IMAP keywords (atoms of at most 64 characters)"))
               if getattr(self, reason)]
        return (f"{self.messages} message(s) lost IMAP keywords, {'; '.join(why)} (the "
                "messages and their other flags are imported)")


def keyword_letters(text: str) -> dict[str, str]:
    """A folder's ``dovecot-keywords`` as ``{letter: keyword}`` (``N name`` lines,
    keyword N is the letter ``a`` + N; another line is skipped, the first of two lines
    for one number counts, as the writer reads it)."""
    letters: dict[str, str] = {}
    for line in text.splitlines():
        number, _, name = line.partition(" ")
        if number.isascii() and number.isdigit() and int(number) < MAX_KEYWORDS and name:
            letters.setdefault(chr(97 + int(number)), name)
    return letters


@functools.lru_cache(maxsize=1024)
def maildir_flags(status: str, xstatus: str) -> tuple[str, str]:
    """``(flags, subdir)`` for the given Status and X-Status values (cached: a mailbox
    has a handful of distinct values, and this runs for every message)."""
    flags = set()
    if "R" in status:
        flags.add("S")
    for char, flag in (("A", "R"), ("F", "F"), ("D", "T"), ("T", "D")):
        if char in xstatus:
            flags.add(flag)
    text = "".join(sorted(flags))
    return text, ("cur" if "O" in status or text else "new")

