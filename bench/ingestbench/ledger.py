"""What the server said it accepted, phase by phase, to check at the end."""

from __future__ import annotations

from ingestbench.client import Request, Result


class Ledger:
    """What the server said it accepted, to check against the table at the end."""

    def __init__(self) -> None:
        self.message_ids: set[str] = set()
        self.requests = 0  # requests that stored something: one RQ job each
        self.problems: list[str] = []
        self.errors: dict[str, int] = {}

    def record(
        self,
        phase: str,
        reqs: list[Request],
        results: list[Result],
        *,
        status: int = 200,
        fresh: bool = True,
    ) -> None:
        """Check one phase's answers; ``fresh``: every event must be accepted."""
        bad = [r for r in results if r.status != status]
        self.errors[phase] = self.errors.get(phase, 0) + len(bad)
        if bad:
            kinds: dict[str, int] = {}
            for r in bad:
                label = f"HTTP {r.status} " + " ".join(r.error.split())[:100]
                kinds[label] = kinds.get(label, 0) + 1
            listing = "; ".join(
                f"{n} x {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])
            )
            self.problems.append(
                f"{phase}: {len(bad)} of {len(results)} not HTTP {status}: {listing}"
            )
        if status != 200:
            return
        for q, r in zip(reqs, results, strict=True):
            if r.status != 200:
                continue
            if r.accepted:
                self.requests += 1
                self.message_ids.update(q.message_ids)
            if fresh and (r.accepted != len(q.message_ids) or r.duplicates):
                self.problems.append(
                    f"{phase}: {len(q.message_ids)} new events sent, "
                    f"{r.accepted} accepted, {r.duplicates} duplicates"
                )
            if not fresh and r.accepted:
                self.problems.append(
                    f"{phase}: a re-sent request stored {r.accepted} events again"
                )
