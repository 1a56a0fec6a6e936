"""Options that name some of a fixed set (`--perturb`, `--phantoms`): 'all' or a comma-separated list."""

from __future__ import annotations


def parse_names(text: str, names, what: str) -> list[str]:
    """'all' or a comma-separated list of `names` -> the names, checked; `what` names them in the error."""
    chosen = list(names) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown or not chosen:
        raise ValueError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from all, {', '.join(names)}")
    return chosen
