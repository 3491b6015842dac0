"""The source host's own names as sendmail finds them: its class w, and ``$w``.

sendmail takes mail to a name of class w as its own (local). It builds the class from
the files :func:`class_w_files` lists: local-host-names, sendmail.cw, sendmail.cf's
``Cw`` and ``Fw`` lines (parsed by :mod:`mailplan.facts.survey`), then the host name
and its /etc/hosts line (:func:`host_names`). ``$w`` is the host's short name
(:func:`short_name`), which also names a forward file in sendmail's ForwardPath. Pure:
:mod:`mailplan.routing.source` reads the files.
"""

from __future__ import annotations

from collections.abc import Iterable


def short_name(hostname: str) -> str | None:
    """sendmail's ``$w``: the host name up to its first dot (/etc/hostname's first word)."""
    first = hostname.split("#", 1)[0].split()
    return first[0].split(".", 1)[0].lower() if first and first[0].split(".", 1)[0] else None


def class_w_files(sendmail_dir: str, etc: str) -> list[str]:
    """The files sendmail's class w (the host's own names) comes from: local-host-names,
    sendmail.cw and the Cw/Fw lines of sendmail.cf, then the host name and its hosts line
    (``hostname`` and ``hosts`` in ``etc``, the directory of the source's passwd file)."""
    base = sendmail_dir.rstrip("/")
    return [f"{base}/local-host-names", f"{base}/sendmail.cw", f"{base}/sendmail.cf",
            f"{etc}/hostname", f"{etc}/hosts"]


def host_names(hostname: str, hosts: str) -> frozenset[str]:
    """The host's own names as sendmail finds them: the name in /etc/hostname, and every
    name on an /etc/hosts line that names it (its canonical name and aliases)."""
    first = hostname.split("#", 1)[0].split()
    if not first:
        return frozenset()
    own = first[0].lower().rstrip(".")
    names = {own}
    for line in hosts.splitlines():
        words = [w.lower().rstrip(".") for w in line.split("#", 1)[0].split()[1:]]
        if own in words:
            names.update(words)
    names.add(own.split(".")[0])  # $w, the short name, is in class w too
    return clean_names(names)


def clean_names(names: Iterable[str]) -> frozenset[str]:
    """Names as class w holds them: lower case, no final dot, none empty."""
    return frozenset(n.lower().rstrip(".") for n in names if n.strip(". "))
