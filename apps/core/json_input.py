"""Checks of a JSON document that came from outside, before anything reads it.

PostgreSQL's text and jsonb cannot hold a NUL character (``\\u0000``), so a NUL in
any string or key would fail the INSERT long after validation said yes. And a
document nested hundreds deep passes ``orjson.loads`` (1,024 levels) but not
``orjson.dumps`` (255), nor anything that recurses over it. Both are refused here,
once, naming where they are (``batch[2].properties.name``), so every reader behind
can take the document as storable.

Both checks look at the raw bytes first: a NUL can only arrive as the escape
``\\u0000`` (JSON has no raw control characters in strings), and a document cannot
nest deeper than it has brackets. Only a body that fails that quick look is walked.
"""

from typing import Any

NUL = "\x00"


class JsonInputError(ValueError):
    """What is wrong (``message``) and where (``field``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_json_input(data: Any, *, raw: bytes, max_depth: int) -> None:
    """Raise JsonInputError if ``data`` (parsed from ``raw``) holds a NUL character
    or nests objects and arrays more than ``max_depth`` deep (the document itself is
    level 1)."""
    if raw.count(b"{") + raw.count(b"[") > max_depth:
        where = _too_deep(data, max_depth - 1, "")
        if where is not None:
            raise JsonInputError(
                where or "body",
                f"nested more than {max_depth} objects or arrays deep",
            )
    if b"\\u0000" in raw:
        where = _nul_at(data, "")
        if where is not None:
            raise JsonInputError(
                where or "body",
                "contains a NUL character (\\u0000), which cannot be stored",
            )


def _too_deep(value: Any, budget: int, path: str) -> str | None:
    """Where a container sits below ``budget`` more levels, or None."""
    if type(value) is dict:
        items = ((_key_path(path, k), v) for k, v in value.items())
    elif type(value) is list:
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, child in items:
        if type(child) is dict or type(child) is list:
            if budget == 0:
                return where
            found = _too_deep(child, budget - 1, where)
            if found is not None:
                return found
    return None


def _nul_at(value: Any, path: str) -> str | None:
    """Where the first string or key holding a NUL is, or None."""
    if type(value) is str:
        return path if NUL in value else None
    if type(value) is dict:
        for key, child in value.items():
            where = _key_path(path, key)
            if NUL in key:
                return where
            found = _nul_at(child, where)
            if found is not None:
                return found
    elif type(value) is list:
        for index, child in enumerate(value):
            found = _nul_at(child, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _key_path(path: str, key: str) -> str:
    shown = key.replace(NUL, "\\u0000")
    return f"{path}.{shown}" if path else shown
