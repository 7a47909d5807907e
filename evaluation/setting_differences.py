"""What changed between the settings a filter or trace run was made with and those of the command that would
resume it: the leaves that differ, "then → now", not the whole record (a retrained delta differs in a file
hash and its training summary among dozens of equal fields)."""

from __future__ import annotations

import json

__all__ = ["setting_differences"]


def _leaves(value, prefix: str = "") -> dict[str, object]:
    """A nested settings dict as dotted paths to its leaves."""
    if isinstance(value, dict) and value:
        return {path: leaf for key, item in value.items() for path, leaf in _leaves(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:16] + "…"


def setting_differences(saved: dict, current: dict, ignore: tuple[str, ...] = (), shown: int = 4) -> str:
    """'field: then → now; …' for the leaves that differ (at most `shown`, then how many more), "" if none;
    `ignore`: top-level keys that may change between a run and its resumption."""
    then = {k: v for k, v in _leaves(saved).items() if k.split(".")[0] not in ignore}
    now = {k: v for k, v in _leaves(current).items() if k.split(".")[0] not in ignore}
    differing = [f"{key}: {_short(then.get(key))} → {_short(now.get(key))}"
                 for key in sorted(then.keys() | now.keys()) if then.get(key) != now.get(key)]
    more = f"; and {len(differing) - shown} more" if len(differing) > shown else ""
    return "; ".join(differing[:shown]) + more
