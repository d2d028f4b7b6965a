"""Assignment rules (smart_support.desk.assignment): pure functions over plain agent dicts."""
from __future__ import annotations

import random

import pytest

from smart_support.desk.assignment import choose_agent, claimable_categories, fits, skill

MARGIN = 0.05


def agent(id, skills=None, load=0, capacity=5, active=True, **extra):
    record = {"id": id, "name": f"agent-{id}", "load": load, "capacity": capacity,
              "active": active, **extra}
    if skills is not None:
        record["skills"] = skills
    return record


def chosen_id(category, agents, margin=MARGIN, exclude=frozenset()):
    choice = choose_agent(category, agents, margin, exclude)
    return None if choice is None else choice["id"]


# -- fits ------------------------------------------------------------------------------------

def test_an_active_agent_below_capacity_with_the_skill_fits():
    assert fits(agent(1, {"Billing": 0.3}, load=4, capacity=5), "Billing")


@pytest.mark.parametrize("record", [
    agent(1, {"Billing": 0.9}, active=False),
    agent(1, {"Billing": 0.9}, load=5, capacity=5),
    agent(1, {"Billing": 0.9}, load=6, capacity=5),
    agent(1, {"Billing": 0.9}, load=0, capacity=0),
    agent(1, {"Billing": 0.0}),
    agent(1, {"Technical": 0.9}),
    agent(1, {}),
    agent(1, None),
    agent(1, skills=None) | {"skills": None},
], ids=["inactive", "at-capacity", "over-capacity", "zero-capacity", "zero-skill",
        "other-category-only", "empty-skills", "no-skills-key", "skills-null"])
def test_an_agent_that_is_inactive_full_or_unskilled_does_not_fit(record):
    assert not fits(record, "Billing")


def test_a_missing_skill_reads_as_zero():
    assert skill(agent(1, {"Technical": 0.7}), "Billing") == 0.0
    assert skill(agent(1), "Billing") == 0.0
    assert skill(agent(1, {"Billing": 1}), "Billing") == 1.0


# -- choose_agent ----------------------------------------------------------------------------

def test_the_best_skill_wins():
    staff = [agent(1, {"Billing": 0.4}), agent(2, {"Billing": 0.9}), agent(3, {"Billing": 0.6})]
    assert chosen_id("Billing", staff) == 2


def test_the_category_decides_which_skill_counts():
    staff = [agent(1, {"Billing": 0.9, "Legal": 0.2}), agent(2, {"Billing": 0.2, "Legal": 0.9})]
    assert chosen_id("Billing", staff) == 1
    assert chosen_id("Legal", staff) == 2


def test_ties_within_the_margin_go_to_the_lowest_load():
    staff = [agent(1, {"Billing": 0.90}, load=3), agent(2, {"Billing": 0.86}, load=1),
             agent(3, {"Billing": 0.88}, load=2)]
    assert chosen_id("Billing", staff, margin=0.05) == 2


def test_a_skill_exactly_at_the_margin_still_counts_as_tied():
    staff = [agent(1, {"Billing": 0.75}, load=4), agent(2, {"Billing": 0.5}, load=0)]
    assert chosen_id("Billing", staff, margin=0.25) == 2


def test_beyond_the_margin_the_better_skill_wins_even_with_a_higher_load():
    staff = [agent(1, {"Billing": 0.9}, load=4), agent(2, {"Billing": 0.8}, load=0)]
    assert chosen_id("Billing", staff, margin=0.05) == 1


def test_a_zero_margin_makes_the_best_skill_win_regardless_of_load():
    staff = [agent(1, {"Billing": 0.91}, load=4), agent(2, {"Billing": 0.9}, load=0)]
    assert chosen_id("Billing", staff, margin=0.0) == 1


def test_the_margin_is_measured_from_the_best_skill_not_chained():
    # 0.90 -> 0.86 -> 0.82: each step is within 0.05 but 0.82 is 0.08 below the best
    staff = [agent(1, {"Billing": 0.90}, load=3), agent(2, {"Billing": 0.86}, load=2),
             agent(3, {"Billing": 0.82}, load=0)]
    assert chosen_id("Billing", staff, margin=0.05) == 2


def test_equal_load_within_the_margin_goes_to_the_higher_skill():
    staff = [agent(1, {"Billing": 0.87}, load=2), agent(2, {"Billing": 0.9}, load=2)]
    assert chosen_id("Billing", staff) == 2


def test_same_load_and_skill_goes_to_the_lowest_id_whatever_the_order():
    staff = [agent(7, {"Billing": 0.8}, load=1), agent(3, {"Billing": 0.8}, load=1),
             agent(5, {"Billing": 0.8}, load=1)]
    rng = random.Random(0)
    for _ in range(20):
        rng.shuffle(staff)
        assert chosen_id("Billing", staff) == 3


def test_inactive_agents_are_never_chosen():
    staff = [agent(1, {"Billing": 1.0}, active=False), agent(2, {"Billing": 0.1}, load=4)]
    assert chosen_id("Billing", staff) == 2
    assert chosen_id("Billing", staff[:1]) is None


def test_agents_at_capacity_are_never_chosen():
    staff = [agent(1, {"Billing": 1.0}, load=3, capacity=3), agent(2, {"Billing": 0.1}, load=9,
                                                                    capacity=10)]
    assert chosen_id("Billing", staff) == 2
    assert chosen_id("Billing", staff[:1]) is None


def test_agents_with_zero_or_missing_skill_are_never_chosen():
    staff = [agent(1, {"Billing": 0.0}), agent(2, {"Technical": 1.0}), agent(3, {}),
             agent(4)]
    assert chosen_id("Billing", staff) is None
    assert chosen_id("Billing", staff + [agent(5, {"Billing": 0.01}, load=4)]) == 5


def test_a_large_margin_does_not_let_an_unskilled_agent_in():
    staff = [agent(1, {"Billing": 0.02}, load=4), agent(2, {"Billing": 0.0}, load=0)]
    assert chosen_id("Billing", staff, margin=1.0) == 1


def test_the_exclude_set_is_respected():
    staff = [agent(1, {"Billing": 0.9}), agent(2, {"Billing": 0.7}), agent(3, {"Billing": 0.5})]
    assert chosen_id("Billing", staff, exclude=frozenset({1})) == 2
    assert chosen_id("Billing", staff, exclude=frozenset({1, 2})) == 3
    assert chosen_id("Billing", staff, exclude=frozenset({1, 2, 3})) is None


def test_nobody_fitting_gives_none():
    assert chosen_id("Billing", []) is None
    staff = [agent(1, {"Billing": 0.9}, active=False), agent(2, {"Billing": 0.9}, load=2,
                                                             capacity=2),
             agent(3, {"Legal": 0.9})]
    assert chosen_id("Billing", staff) is None


def test_the_chosen_record_is_the_agent_dict_itself():
    staff = [agent(1, {"Billing": 0.9}, team="north")]
    assert choose_agent("Billing", staff, MARGIN) is staff[0]


def test_choosing_does_not_modify_the_agents():
    staff = [agent(1, {"Billing": 0.9}, load=1), agent(2, {"Billing": 0.5})]
    before = [dict(a, skills=dict(a["skills"])) for a in staff]
    choose_agent("Billing", staff, MARGIN, frozenset({2}))
    assert staff == before


# -- claimable_categories --------------------------------------------------------------------

def test_claimable_categories_are_the_sorted_categories_with_positive_skill():
    record = agent(1, {"Technical": 0.5, "Billing": 0.1, "Legal": 0.0, "Account": 1.0})
    assert claimable_categories(record) == ["Account", "Billing", "Technical"]


def test_an_inactive_agent_may_claim_nothing():
    assert claimable_categories(agent(1, {"Billing": 0.9}, active=False)) == []


def test_a_full_agent_may_claim_nothing():
    assert claimable_categories(agent(1, {"Billing": 0.9}, load=2, capacity=2)) == []
    assert claimable_categories(agent(1, {"Billing": 0.9}, load=3, capacity=2)) == []


def test_an_agent_without_skills_may_claim_nothing():
    assert claimable_categories(agent(1, {})) == []
    assert claimable_categories(agent(1)) == []
    assert claimable_categories(agent(1, {"Billing": 0.0})) == []


def test_claimable_categories_agree_with_fits():
    record = agent(1, {"Technical": 0.5, "Billing": 0.1, "Legal": 0.0}, load=1, capacity=3)
    for category in ("Technical", "Billing", "Legal", "Other"):
        assert fits(record, category) == (category in claimable_categories(record))
