"""Options that name some of a fixed set (`--perturb`, `--phantoms`): 'all' or a comma-separated list."""

from __future__ import annotations


def parse_names(text: str, names, what: str) -> list[str]:
    """'all' or a comma-separated list of `names` -> the names, checked, each once (a name given twice
    was scored twice and its images counted twice); `what` names them in the error."""
    chosen = list(names) if text == "all" else list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not chosen:
        raise ValueError(f"the list of {what} is empty; choose from all, {', '.join(names)}")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; choose from all, {', '.join(names)}")
    return chosen
