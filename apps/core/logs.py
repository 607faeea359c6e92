"""Log lines that carry their ids: ``... contact merged contact_id=12 moved={...}``.

Anything passed in ``extra=`` (contact_id, enrollment_id, message_id, ...) is appended
as key=value, so every line about a contact can be grepped by its id.
"""

import logging

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return line
