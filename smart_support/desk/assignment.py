"""Which agent gets a ticket: pure functions over plain agent records, no database.

An agent fits a ticket when it is active, below its capacity, and has a non-zero skill for the
ticket's category. Among those, the best skill wins; agents within `margin` of the best skill
count as tied, and the tie goes to the lowest load (then the higher skill, then the oldest
agent, so the choice is deterministic).
"""
from __future__ import annotations


def skill(agent: dict, category: str) -> float:
    return float((agent.get("skills") or {}).get(category, 0.0))


def fits(agent: dict, category: str) -> bool:
    return bool(agent["active"]) and agent["load"] < agent["capacity"] \
        and skill(agent, category) > 0


def choose_agent(category: str, agents: list[dict], margin: float,
                 exclude: frozenset[int] = frozenset()) -> dict | None:
    candidates = [a for a in agents if a["id"] not in exclude and fits(a, category)]
    if not candidates:
        return None
    best = max(skill(a, category) for a in candidates)
    tied = [a for a in candidates if skill(a, category) >= best - margin - 1e-12]
    return min(tied, key=lambda a: (a["load"], -skill(a, category), a["id"]))


def claimable_categories(agent: dict) -> list[str]:
    """The categories an agent may take from the queue (empty when it may take nothing)."""
    if not agent["active"] or agent["load"] >= agent["capacity"]:
        return []
    return sorted(c for c, level in (agent.get("skills") or {}).items() if level > 0)
