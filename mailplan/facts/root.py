"""``source.root``: read the old server's files from a copy of its disk.

A copy (a restored backup, the old disk mounted at /mnt/oldmail) is read with ``source:
local``. Its files name paths as the old server had them: passwd names /home/alice,
an aliases file ``:include:/etc/mail/staff``, sendmail.cf ``/etc/mail/aliases``. With
``source.root`` those are read under the root, so that nothing outside the copy is read.
Which paths are put under it:

* a path the spec writes is read as written (``source.passwd``, ``spool``, ``aliases``,
  ``sendmail_dir``, a user's ``spool:`` and ``folders:``, an absolute ``folders``):
  ``mailplan init --root`` writes them under the root already; paths derived from
  them (sendmail_dir and localtime next to passwd) are not prefixed again;
* a default the spec leaves out (passwd, shadow, spool, the aliases files) is read
  under the root (:func:`spec_file`, :func:`default`);
* a path found in a source file (a home directory in passwd, and what is read in it:
  ~/.forward, ~/mbox, ~/.mailboxlist, the folders of a relative ``folders``;
  ``:include:`` files; sendmail.cf's AliasFile and Fw files) is read under the root
  (:func:`inside`), unless it names a place under the root already (a passwd edited
  for the copy). One that is not absolute, or whose ``..`` climbs above the old
  server's ``/``, is refused (:class:`OutsideRoot`): it is not read.

What :func:`inside` gives is then resolved as a chroot would
(:mod:`mailplan.facts.links`): a symbolic link in the copy whose target is absolute
(home -> /export/home) leads to the copy's /export/home, not this machine's. Links are
not followed where mailplan reads a user's own files, as without a root.
"""

from __future__ import annotations

from typing import Any

#: the source paths mailplan reads when the spec does not name them
DEFAULTS = {"passwd": "/etc/passwd", "shadow": "/etc/shadow", "spool": "/var/spool/mail"}


class OutsideRoot(ValueError):
    """A path from a source file that cannot be read under ``source.root``."""


def root_of(src: dict[str, Any]) -> str:
    """``source.root`` without its final slash ("" when unset, or ``/``)."""
    return str(src.get("root", "")).rstrip("/")


def default(src: dict[str, Any], path: str) -> str:
    """A default path of the old server, as this machine reads it (under the root)."""
    return root_of(src) + path


def spec_file(src: dict[str, Any], key: str) -> str:
    """``source.passwd``, ``shadow`` or ``spool``: as the spec writes it, else its
    default under the root."""
    return str(src[key]) if key in src else default(src, DEFAULTS[key])


def inside(root: str, path: str) -> str:
    """``path``, as a file of the old server names it, where this machine reads it:
    ``root`` + ``path`` (``path`` itself without a root, or when it names a place under
    the root already: a passwd edited for the copy is not prefixed twice). With a root,
    a relative path or one whose ``..`` climbs above ``/`` (the root) raises
    :class:`OutsideRoot`."""
    if not root:
        return path
    if not path.startswith("/"):
        raise OutsideRoot(f"{path!r} is not an absolute path, so it has no place under "
                          f"source.root ({root}): not read")
    there = path == root or path.startswith(root + "/")
    depth = 0
    for part in (path[len(root):] if there else path).split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise OutsideRoot(f"{path!r} leaves source.root ({root}) through '..': "
                                  "not read")
        elif part not in ("", "."):
            depth += 1
    return path if there else root + path
