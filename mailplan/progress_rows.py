"""The rows of apply's live display, fitted to the terminal's width.

An administrator watching an apply in an 80-column terminal (or a narrower tmux pane)
must see on each row which user it is about (and the folder being imported) and the ETA,
and on each finished step's line which mailbox it was. rich would cut the row's columns
wherever they overflow (the address and the ETA went first). Here a row is laid out whole
for the width it gets, giving up the least important parts first: the bar shrinks, then
goes; counts and sizes are abbreviated (``123k msgs``, ``9.2G``); the rate goes, then the
sizes; then a long address is shortened in the middle (``jean-chr…@mail.example.com``:
the domain kept) and a long folder name after it, and only then the message counts. The
ETA and the end of a line are never cut: a line that cannot fit even so is cut with an
ellipsis at its end, which says so.

Only the live display (:class:`~mailplan.progress.LiveReporter`) imports this module
(and rich); the plain status lines of logs and pipes are never shortened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from rich.cells import cell_len
from rich.progress import ProgressColumn, Task
from rich.text import Text

ELLIPSIS = "…"
MIN_BAR, MAX_BAR = 10, 40
#: an address is shortened to no less than this before the message counts go
MIN_LABEL = 24
#: a finished step's folder name is shortened to no less than this
MIN_ITEM = 12


def short_count(n: int) -> str:
    """``9999``, ``12.3k``, ``123k``, ``1.2M``."""
    for unit, factor in (("M", 1_000_000), ("k", 1000)):
        if n >= 10_000 and n >= factor:
            value = n / factor
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def short_size(size: int) -> str:
    """A byte count in at most 4 characters and a unit: ``200B``, ``9.2G``, ``118M``."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return f"{size}B"


def _head(text: str, width: int) -> str:
    """The longest start of ``text`` that is at most ``width`` cells."""
    out = ""
    for char in text:
        if cell_len(out + char) > width:
            break
        out += char
    return out


def _tail(text: str, width: int) -> str:
    return _head(text[::-1], width)[::-1]


def elide(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, its middle replaced with an ellipsis."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    return _head(text, keep - keep // 2) + ELLIPSIS + _tail(text, keep // 2)


def elide_address(address: str, width: int) -> str:
    """``user@domain`` in at most ``width`` cells: the user's name shortened first (its
    start kept), then the domain's middle (its start and end kept)."""
    local, at, domain = address.rpartition("@")
    if cell_len(address) <= width or not at:
        return elide(address, width)
    if width >= cell_len(domain) + 3:
        return _head(local, width - cell_len(domain) - 2) + ELLIPSIS + at + domain
    if width < 5:
        return elide(address, width)
    return local[:1] + ELLIPSIS + at + elide(domain, width - 3)


def mail_details(messages: int, messages_total: int, size: int, size_total: int, *,
                 rate: int, eta: str, full: str) -> list[str]:
    """A mail row's details, from the fullest (``full``: the status line's) down to the
    ETA alone (``rate`` in bytes per second)."""
    pct = f"{100 * size // size_total}%" if size_total else ""
    counts = f"{short_count(messages)}/{short_count(messages_total)} msgs"
    sizes = f"{short_size(size)}/{short_size(size_total)}" + (f" ({pct})" if pct else "")
    return [full, f"{counts}, {sizes}, {short_size(rate)}/s, ETA {eta}",
            f"{counts}, {sizes}, ETA {eta}",
            f"{counts}, {pct + ', ' if pct else ''}ETA {eta}",
            f"{pct + ', ' if pct else ''}ETA {eta}", f"ETA {eta}"]


def _candidates(details: Sequence[str], keep: int, whole: int, shortest: int
                ) -> Iterator[tuple[str, int, bool]]:
    """(detail, the label's least width, with a bar), in the order they are tried: a bar
    while the fullest details fit with it; then the details one by one, the label
    shortened (to ``shortest``) only before the last ``keep`` and each of those; at last
    the poorest with whatever room is left for the label."""
    rich, poor = details[:len(details) - keep], details[len(details) - keep:]
    for detail in details[:2]:
        yield detail, whole, True
    for detail in rich:
        yield detail, whole, False
    for detail in rich[-1:]:
        yield detail, shortest, False
    for detail in poor:
        yield detail, whole, False
        yield detail, shortest, False
    yield details[-1], min(whole, 1), False


def least(label: str, *, address: bool) -> int:
    """How short a label may be made before the poorer details are tried: for an
    address, its whole domain and two letters of the user's name, at least."""
    domain = label.rpartition("@")[2] if address and "@" in label else ""
    return min(cell_len(label), max(MIN_LABEL, cell_len(domain) + 4 if domain else 0))


def labelled(label: str, item: str) -> str:
    """A row's whole label: ``label``, and its ``item`` (a folder) after a space."""
    return f"{label} {item}" if item else label


def fit_pair(address: str, item: str, width: int) -> str | None:
    """``address item`` in ``width`` cells: the address shortened (its domain kept) to no
    less than :func:`least`, then the folder's middle to no less than :data:`MIN_ITEM`,
    then the address to 8 cells and the folder to 4; None when that is still too wide."""
    gap = " " if item else ""
    widths = {"address": cell_len(address), "item": cell_len(item)}
    over = sum(widths.values()) - (width - len(gap))
    for part, floor in (("address", least(address, address=True)), ("item", MIN_ITEM),
                        ("address", 8), ("item", 4)):
        cut = max(0, min(over, widths[part] - floor))
        widths[part] -= cut
        over -= cut
    if over > 0:
        return None
    return elide_address(address, widths["address"]) + gap + elide(item, widths["item"])


def _shorten(label: str, item: str, width: int, *, address: bool) -> str:
    """A row's label (``label item``) in at most ``width`` cells: see :func:`fit_pair`;
    narrower, the label alone (the user is worth more than the folder)."""
    if item:
        return fit_pair(label, item, width) or elide_address(label, width)
    return (elide_address if address else elide)(label, width)


def fit_row(indent: str, label: str, details: Sequence[str], width: int, *, keep: int = 0,
            pad: int = 0, address: bool = False, item: str = "") -> tuple[str, int, str]:
    """``indent + label`` (and `` item``, a user's folder, when given), the bar's width
    (0: no bar) and the detail, for a row of at most ``width`` cells: ``indent label
    item bar detail``. ``keep``: how many of the last (poorest) details come only after
    the label was shortened (an address to :func:`least`, then a folder to
    :data:`MIN_ITEM`); ``pad``: the width the other rows' labels take (with their
    indent), so that bars line up where they fit."""
    room = width - cell_len(indent)
    whole, pad = cell_len(labelled(label, item)), pad - cell_len(indent)
    shortest = least(label, address=address) + (
        1 + min(cell_len(item), MIN_ITEM) if item else 0)
    for detail, at_least, bar in _candidates(details, keep, whole, shortest):
        need = cell_len(detail) + (MIN_BAR + 2 if bar else 1)
        if at_least + need > room:
            continue
        if bar:
            wide = max(whole, pad) if max(whole, pad) + need <= room else whole
            return (indent + labelled(label, item) + " " * (wide - whole),
                    min(MAX_BAR, room - wide - cell_len(detail) - 2), detail)
        return indent + _shorten(label, item, room - need, address=address), 0, detail
    # narrower than the ETA and a few letters of the label: cut, and say so
    line = elide_address(label, 5) + " " + details[-1]
    return indent + _head(line, room - 1) + ELLIPSIS, 0, ""


def fit_step(prefix: str, address: str, item: str, suffix: str, width: int) -> str:
    """A finished step's line (``prefix address item suffix``) in ``width`` cells, the
    address and folder shortened as :func:`fit_pair` does. Too narrow for that, the
    whole line (rich then wraps it: nothing is cut)."""
    pair = fit_pair(address, item, width - cell_len(prefix + suffix))
    return prefix + (pair if pair is not None else labelled(address, item)) + suffix


class RowColumn(ProgressColumn):
    """A whole row as one column: label, bar and details fitted together (see
    :func:`fit_row`). ``width`` and ``tasks`` (the display's rows) are asked when a row
    is drawn: the row follows the terminal's size, and its bar lines up with the others'
    after the widest label shown."""

    def __init__(self, width: Callable[[], int], tasks: Callable[[], Sequence[Task]]
                 ) -> None:
        super().__init__()
        self.width, self.tasks = width, tasks

    def render(self, task: Task) -> Text:
        """The row of ``task`` (its fields: ``details``, and ``keep``, ``indent``,
        ``address``, ``item`` and ``style`` where given)."""
        # the bars start after the widest label of the rows that have one
        pad = max((cell_len(t.fields.get("indent", "")
                            + labelled(t.description, t.fields.get("item", "")))
                   for t in self.tasks() if t.visible and self._fit(t, 0)[1]), default=0)
        label, bar, detail = self._fit(task, pad)
        fields = task.fields
        text = Text()
        text.append(label, style=fields.get("style", ""))
        if bar:
            total = task.total
            done = bar if total is not None and task.completed >= total else \
                int(bar * task.completed / total) if total else 0
            text.append(" ")
            text.append("━" * done, style="bar.finished" if done == bar else "bar.complete")
            text.append("━" * (bar - done), style="bar.back")
        if detail:
            text.append(" " + detail)
        return text

    def _fit(self, task: Task, pad: int) -> tuple[str, int, str]:
        fields = task.fields
        return fit_row(fields.get("indent", ""), task.description, fields["details"],
                       self.width(), keep=fields.get("keep", 0), pad=pad,
                       address=fields.get("address", False), item=fields.get("item", ""))
