"""What a dataset-building command did: counts per split and every skip with its reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class BuildReport:
    """Filled while building; printed as the end-of-command summary."""

    written: Counter = field(default_factory=Counter)  # split -> samples written now
    kept: Counter = field(default_factory=Counter)  # split -> complete samples already there
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or item, reason)
    notes: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append((str(where), reason))

    @property
    def total(self) -> int:
        return sum(self.written.values()) + sum(self.kept.values())

    def skip_reasons(self) -> Counter:
        """How many skips per reason (reason text without file-specific details)."""
        return Counter(reason.split(" (")[0] for _, reason in self.skipped)

    def to_dict(self) -> dict:
        return {
            "written": dict(self.written),
            "kept": dict(self.kept),
            "skipped": [{"where": w, "reason": r} for w, r in self.skipped],
            "skip_reasons": dict(self.skip_reasons()),
            "notes": list(self.notes),
        }
