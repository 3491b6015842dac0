"""Pure Maildir++ helpers: folder directory names, message file names, subscription lines,
and a compact set of message identities (:class:`Identities`).

Nothing here touches a disk. The writer agent (:mod:`mailplan.mail.writer`) carries its own
copy of :data:`NAME_RE` (it must stay stdlib-only); a test keeps the two identical.

Folder names
------------
A source folder is a path relative to the user's mail directory (``Work``, ``lists/python``)
or ``INBOX``. ``INBOX`` is the Maildir root. Every other folder is the directory
``.`` + its path segments joined by ``.`` (``lists/python`` -> ``.lists.python``), each
segment in the encoding the target's IMAP server keeps on disk (the spec's
``target.folder_names``, :data:`FOLDER_NAMES`): ``utf7``, IMAP modified UTF-7 (RFC 3501
5.1.3; dovecot without ``mailbox_list_utf8``, courier-imap before 5.0): ``Ärger`` ->
``.&AMQ-rger``, ``Q&A`` -> ``.Q&-A``; or ``utf8``, the name as it is (courier-imap 5.0 and
later, whose ``maildirmake --convutf8`` converts old folders): ``.Ärger``, ``.Q&A``.
A ``.`` *inside* a segment cannot be written as-is (it would create a hierarchy level), so it
is escaped the way dovecot's listescape plugin reads it: ``\\2e``; a literal ``\\`` becomes
``\\5c`` so the escape stays reversible (``v1.2`` -> ``.v1\\2e2``). Dovecot with
``mail_plugins = listescape`` shows the original name; dovecot without it and courier show
``v1\\2e2`` -- a distinct folder, never merged into ``v1/2``. In ``utf7`` a ``~`` that
begins a segment is written ``\\7e`` as listescape reads it (dovecot refuses a name that
begins with ``~``, and with listescape one whose level does): ``~x`` -> ``.\\7ex``, which
dovecot without the plugin shows as ``\\7ex``. Empty segments, ``.``/``..``
segments, NUL, control characters, names that are not UTF-8 and names longer than 255
bytes on disk are refused.

A source file's name is the folder's name, except that UW-imapd stores the folders IMAP
clients create under their IMAP (modified UTF-7) names: a path segment that is valid
modified UTF-7 holding a ``&...-`` sequence (``Entw&APw-rfe``, ``Sent &- Drafts``) is
decoded first (``Entwürfe``, ``Sent & Drafts``); any other (``Q&A``, made by a local mail
program) is taken literally (:func:`source_folder`).

File names
----------
``<arrival>.M<usec>P<pid>_mp<sha256>_<occurrence>.<host>,S=<size>[:2,<flags>]``: the
unique part embeds the full identity so a scan of new/ and cur/ recovers exactly which
messages are present (whatever flags a mail reader later added after ``:2,``);
``,S=<size>`` is what courier and dovecot read for quota and fast sizes.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass

from mailplan.errors import MailplanError
from mailplan.text import escape

NAME_RE = re.compile(
    r"^(?P<time>\d+)\.M(?P<usec>\d+)P(?P<pid>\d+)_mp(?P<digest>[0-9a-f]{64})_(?P<occ>\d+)"
    r"\.(?P<host>[^/:,\0]+),S=(?P<size>\d+)(?::2,(?P<flags>[A-Za-z]*))?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_UTF8 = re.compile("[\ud800-\udfff]")  # bytes that were not UTF-8 (surrogateescape)


class FolderNameError(MailplanError):
    """A folder name cannot be mapped to a Maildir++ directory."""


@dataclass(frozen=True)
class MessageName:
    """What a mailplan-written Maildir file name says."""

    arrival: int
    usec: int
    pid: int
    digest: str
    occurrence: int
    host: str
    size: int
    flags: str | None

    @property
    def identity(self) -> tuple[str, int]:
        """``(sha256, occurrence)`` of the stored message."""
        return (self.digest, self.occurrence)


def encode_mutf7(text: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 5.1.3) of ``text``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mutf7(text: str) -> str:
    """Inverse of :func:`encode_mutf7`."""
    def repl(m: re.Match[str]) -> str:
        body = m[1]
        if not body:
            return "&"
        b64 = body.replace(",", "/")
        return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")

    return re.sub(r"&([^-]*)-", repl, text)


#: the on-disk encodings of folder names (the spec's ``target.folder_names``)
FOLDER_NAMES = ("utf7", "utf8")


def _check_names(names: str) -> None:
    if names not in FOLDER_NAMES:
        raise ValueError(f"folder name encoding {names!r} is not one of {FOLDER_NAMES}")


def source_folder(rel: str) -> str:
    """The folder a source file's path (relative to the folder directory) stands for: each
    segment that is valid IMAP modified UTF-7 holding a ``&...-`` sequence (or ``&-``) is
    decoded, as UW-imapd stores a folder an IMAP client created (``Entw&APw-rfe`` ->
    ``Entwürfe``); any other segment is kept as it is (``Q&A``). Valid means what
    :func:`encode_mutf7` gives back for the decoded name, so an encoded printable ASCII
    character or a stray ``&`` is taken literally."""
    return "/".join(_source_segment(seg) for seg in rel.split("/"))


def _source_segment(seg: str) -> str:
    if "&" not in seg:
        return seg
    try:
        decoded = decode_mutf7(seg)
        if encode_mutf7(decoded) == seg and not _CONTROL.search(decoded) \
                and "/" not in decoded:
            return decoded
    except (ValueError, UnicodeError):  # bad base64, odd or unpaired UTF-16
        pass
    return seg


def is_inbox(folder: str) -> bool:
    """Whether a folder name is the INBOX: ``INBOX`` in any case of its ASCII letters
    (RFC 3501), and only those (``"ınbox".upper()`` is ``"INBOX"`` in Python, but the
    dotless i makes it another folder for every IMAP server)."""
    return folder.isascii() and folder.upper() == "INBOX"


def folder_dirname(folder: str, names: str = "utf7") -> str:
    """Maildir++ directory (relative to the Maildir root) for a source folder path,
    segments encoded as ``names`` says (:data:`FOLDER_NAMES`).

    ``INBOX`` (any case) -> ``""``; ``Work`` -> ``.Work``; ``a/b`` -> ``.a.b``;
    ``v1.2`` -> ``.v1\\2e2``; ``Ärger`` -> ``.&AMQ-rger`` (utf7) or ``.Ärger`` (utf8).
    A first segment that is INBOX in another case is written ``INBOX`` (``inbox/x`` ->
    ``.INBOX.x``): dovecot lists a ``.inbox.x`` as ``INBOX.x`` but opens ``INBOX.x`` in
    ``.INBOX.x``, so the mail in ``.inbox.x`` could not be read.
    """
    return _dirname(folder, names)


def earlier_dirnames(folder: str, names: str = "utf7") -> list[str]:
    """The other directories earlier mailplan versions imported ``folder`` into: before
    a first segment INBOX in another case was written ``INBOX`` (``.inbox.x``), and
    before a ``~`` beginning a segment was written ``\\7e`` (``.~name``: utf7 only). A
    folder whose name none of that touches has none."""
    now = folder_dirname(folder, names)
    return [name for name in dict.fromkeys(
        (_dirname(folder, names, inbox=False, tilde=False),
         _dirname(folder, names, tilde=False))) if name != now]


def _dirname(folder: str, names: str, *, inbox: bool = True, tilde: bool = True) -> str:
    """:func:`folder_dirname`; without ``inbox`` or ``tilde``, as the versions before
    those rules wrote it (:func:`earlier_dirnames`)."""
    _check_names(names)
    if is_inbox(folder):
        return ""
    if not folder or _CONTROL.search(folder):
        raise FolderNameError(f"folder name {folder!r} is empty or holds control characters")
    if _NOT_UTF8.search(folder):
        raise FolderNameError(f"folder name '{escape(folder)}' is not UTF-8 text (rename "
                              "the file on the source to import it)")
    segments = folder.split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            raise FolderNameError(f"folder name {folder!r} has an empty, '.' or '..' part",
                                  hint="folder paths are relative, without // or ..")
    if inbox and is_inbox(segments[0]):  # dovecot opens inbox.x as INBOX.x, in .INBOX.x
        segments[0] = "INBOX"
    encode = encode_mutf7 if names == "utf7" else str
    escaped = [encode(seg).replace("\\", "\\5c").replace(".", "\\2e") for seg in segments]
    if tilde and names == "utf7":
        # dovecot refuses a name that begins with ~: listescape's \7e
        escaped = ["\\7e" + seg[1:] if seg[:1] == "~" else seg for seg in escaped]
    name = "." + ".".join(escaped)
    if len(name.encode()) > 255:
        raise FolderNameError(f"folder name {folder!r} is too long for a directory name")
    return name


def folder_from_dirname(dirname: str, names: str = "utf7") -> str:
    """Inverse of :func:`folder_dirname` (``""`` -> ``INBOX``)."""
    _check_names(names)
    if dirname == "":
        return "INBOX"
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise FolderNameError(f"{dirname!r} is not a Maildir++ folder directory")
    decode = decode_mutf7 if names == "utf7" else str
    tilde = "\\7e" if names == "utf7" else None
    try:
        return "/".join(decode(("~" + p[3:] if p[:3] == tilde else p)
                               .replace("\\2e", ".").replace("\\5c", "\\"))
                        for p in dirname[1:].split("."))
    except (ValueError, UnicodeError):  # a directory not named by an IMAP server
        raise FolderNameError(f"'{escape(dirname)}' is not valid modified UTF-7") from None


def imap_name(folder: str, separator: str = ".") -> str:
    """The IMAP mailbox name (modified UTF-7) a server shows for a source folder."""
    if is_inbox(folder):
        return "INBOX"
    segments = folder.split("/")
    if is_inbox(segments[0]):
        segments[0] = "INBOX"
    return separator.join(encode_mutf7(seg) for seg in segments)


def subscription_lines(folders: list[str], names: str = "utf7") -> dict[str, list[str]]:
    """Lines for ``courierimapsubscribed`` (``INBOX.`` prefixed) and dovecot ``subscriptions``.

    Names are written as the folder directories are named on disk (``names``, as for
    :func:`folder_dirname`: courier-imap 5 keeps its subscriptions in UTF-8 as its
    folders), dot-escaped ones as well, so the server finds the folder.
    """
    return dir_subscription_lines([folder_dirname(f, names) for f in folders])


def dir_subscription_lines(dirnames: list[str]) -> dict[str, list[str]]:
    """:func:`subscription_lines` of the folders in these directories (``""``, the
    INBOX, has none)."""
    dirs = [d[1:] for d in dirnames if d]
    return {"courierimapsubscribed": [f"INBOX.{n}" for n in dirs],
            "subscriptions": list(dirs)}


#: a folder's dovecot-keywords: the keyword each letter of its files' names stands for
#: (``N name`` lines; the writer extends it)
KEYWORDS_FILE = "dovecot-keywords"

#: the subscription files apply writes in a Maildir, courier-imap's and dovecot's
#: (:func:`subscription_lines`)
SUBSCRIPTION_FILES = ("courierimapsubscribed", "subscriptions")
_DOVECOT_V2 = "V\t2\n\n"
_TAB_ESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def subscribed_names(data: bytes | None) -> set[str]:
    """The names a subscription file holds (none when it is missing). Dovecot keeps a
    file it finds in the form it finds it; one in its version 2 form (a ``V<tab>2``
    header, a name's levels separated by tabs, escaped with ``\\x01``) is read back in
    the one-line form apply writes, levels joined with Maildir++'s ``.``."""
    text = (data or b"").decode("utf-8", "surrogateescape")
    if not text.startswith(_DOVECOT_V2):
        return set(text.splitlines())
    return {".".join(_tab_unescaped(level) for level in line.split("\t"))
            for line in text[len(_DOVECOT_V2):].splitlines()}


def _tab_unescaped(text: str) -> str:
    parts = text.split("\x01")
    return parts[0] + "".join(_TAB_ESCAPES.get(p[:1], p[:1]) + p[1:] for p in parts[1:])


def unsubscribed(wanted: Mapping[str, list[str]], files: Mapping[str, bytes | None]
                 ) -> list[str]:
    """The subscription files (of :data:`SUBSCRIPTION_FILES`) that lack a line apply
    writes for a folder: ``wanted`` is what it writes, per file, ``files`` the files'
    contents on the target (None: not there). Lines the user added there are no
    concern: apply only adds lines."""
    return [name for name in SUBSCRIPTION_FILES
            if set(wanted.get(name, [])) - subscribed_names(files.get(name))]


def message_name(*, arrival: float | None, usec: int, pid: int, digest: str, occurrence: int,
                 host: str, size: int, flags: str | None) -> str:
    """The file name for a message; ``flags=None`` for new/ (no info part)."""
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return format_name(arrival, usec, pid, digest, occurrence, name_tail(host), size, flags)


def format_name(arrival: float | None, usec: int, pid: int, digest: str, occurrence: int,
                tail: str, size: int, flags: str | None) -> str:
    """:func:`message_name` for a caller that checked the digest and made ``tail`` (what
    :func:`name_tail` gives) once: the importer, once per message (5.4 -> 3 us)."""
    name = f"{max(int(arrival or 0), 0)}.M{usec}P{pid}_mp{digest}_{occurrence}{tail}{size}"
    return name if flags is None else f"{name}:2,{_info_flags(flags)}"


@functools.lru_cache(maxsize=64)
def name_tail(host: str) -> str:
    """What follows the occurrence in a name, up to the size: the host part and ``,S=``."""
    return f".{_safe_host(host)},S="


@functools.lru_cache(maxsize=64)
def _safe_host(host: str) -> str:
    """The host part of a file name: ``/``, ``:`` and ``,`` escaped as in qmail's maildir
    spec (cached: it is the same for every message of a run)."""
    return (host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")
            or "localhost")


@functools.lru_cache(maxsize=256)
def _info_flags(flags: str) -> str:
    """Maildir flag letters as a name's info part holds them: once each, sorted."""
    return "".join(sorted(set(flags)))


def parse_message_name(name: str) -> MessageName | None:
    """Parse a mailplan-written file name; ``None`` for any other Maildir file."""
    m = NAME_RE.match(name)
    if m is None:
        return None
    return MessageName(arrival=int(m["time"]), usec=int(m["usec"]), pid=int(m["pid"]),
                       digest=m["digest"], occurrence=int(m["occ"]), host=m["host"],
                       size=int(m["size"]), flags=m["flags"])


#: a sha256 as message names and ledger lines carry it
DIGEST_RE = re.compile(r"[0-9a-f]{64}")


class Identities(Set[tuple[str, int]]):
    """A set of ``(digest, occurrence)`` identities held as the digest's 32 bytes and the
    occurrence's digits (the writer's own form): about 100 bytes each, against 215 for
    a set of tuples of the hex text and a number. Membership takes an identity tuple;
    iterating gives identity tuples."""

    __slots__ = ("_keys", "__weakref__")

    def __init__(self, keys: set[bytes] | None = None) -> None:
        self._keys = keys if keys is not None else set()

    @staticmethod
    def key(identity: tuple[str, int]) -> bytes:
        return bytes.fromhex(identity[0]) + b"%d" % identity[1]

    @staticmethod
    def identity(key: bytes) -> tuple[str, int]:
        """The identity tuple a :meth:`key` holds."""
        return key[:32].hex(), int(key[32:])

    def __contains__(self, identity: object) -> bool:
        try:
            return self.key(identity) in self._keys  # type: ignore[arg-type]
        except (TypeError, ValueError, IndexError):  # not an identity tuple
            return False

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return map(self.identity, self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, identity: tuple[str, int]) -> bytes | None:
        """Add an identity and return its key, the one object the set holds from now on
        (None: left out, its digest not 64 lowercase hex digits: a hand-edited ledger
        line is no message's)."""
        if not DIGEST_RE.fullmatch(identity[0]):
            return None
        key = self.key(identity)
        size = len(self._keys)
        self._keys.add(key)
        return key if len(self._keys) > size else None

    @classmethod
    def _from_iterable(cls, it: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        return set(it)  # what ``&``, ``|`` and ``-`` give: a plain set of identity tuples
