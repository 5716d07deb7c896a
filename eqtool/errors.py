"""User-facing errors.

Every problem the user can fix (bad file, bad option, bad config) raises :class:`EqtoolError`.
The CLI prints ``error: <source>: <message>`` on one line and exits with code 2; a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

__all__ = ["EqtoolError"]


class EqtoolError(Exception):
    """A problem with the user's input, reported as one line.

    Args:
        message: what is wrong, in plain words.
        source: the file (or option, or config key) the problem is in.
        where: a finer location inside the source, e.g. ``"frame 3"`` or ``"line 12"``.
    """

    def __init__(self, message: str, source: str | None = None, where: str | None = None):
        self.message = message
        self.source = None if source is None else str(source)
        self.where = where
        super().__init__(self.oneline())

    def oneline(self) -> str:
        head = ""
        if self.source:
            head = f"{self.source}"
            if self.where:
                head += f" ({self.where})"
            head += ": "
        return head + " ".join(self.message.split())
