"""Storm detection (smart_support.desk.storm) on small hand-made unit vectors."""
from __future__ import annotations

import numpy as np
import pytest

from smart_support.desk.storm import (
    Decision, StormPolicy, Window, centroid, decide, from_bytes, joined, to_bytes,
)

DIM = 8
POLICY = StormPolicy(similarity=0.8, storm_count=10, window_seconds=300.0)


def unit(*values) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[:len(values)] = values
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def axis(i: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[i] = 1.0
    return vector


def near(i: int, k: int, wobble: float = 0.15) -> np.ndarray:
    """A unit vector close to axis i (cosine about 0.99), a little different for each k."""
    vector = axis(i) * 1.0
    vector[(i + 1 + k % (DIM - 1)) % DIM] += wobble
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def filled(vectors, start_id: int = 1, start_time: float = 1000.0, capacity: int = 1024):
    window = Window(DIM, capacity=capacity)
    for n, vector in enumerate(vectors):
        window.add(start_id + n, start_time + n, vector)
    return window


# -- Window ----------------------------------------------------------------------------------

def test_an_empty_window_has_no_tickets_and_last_id_zero():
    window = Window(DIM)
    assert len(window) == 0
    assert window.last_id == 0
    ids, scores = window.similarities(axis(0))
    assert len(ids) == 0 and len(scores) == 0


def test_adding_tickets_grows_the_window_and_moves_last_id():
    window = Window(DIM)
    window.add(5, 10.0, axis(0))
    window.add(9, 11.0, axis(1))
    assert len(window) == 2
    assert window.last_id == 9
    ids, scores = window.similarities(axis(1))
    assert ids.tolist() == [5, 9]
    np.testing.assert_allclose(scores, [0.0, 1.0])


def test_evict_before_drops_tickets_older_than_the_cutoff_and_keeps_the_rest():
    window = filled([axis(k % DIM) for k in range(6)], start_id=1, start_time=100.0)
    window.evict_before(102.0)  # times 100 and 101 leave; 102 stays (side="left")
    assert len(window) == 4
    assert window.similarities(axis(0))[0].tolist() == [3, 4, 5, 6]
    assert window.last_id == 6
    window.evict_before(102.0)  # idempotent
    assert len(window) == 4
    window.evict_before(50.0)  # a cutoff in the past evicts nothing
    assert len(window) == 4


def test_evicting_everything_leaves_an_empty_window_with_last_id_zero():
    window = filled([axis(0), axis(1)], start_time=10.0)
    window.evict_before(1e9)
    assert len(window) == 0
    assert window.last_id == 0
    window.add(3, 2e9, axis(2))
    assert len(window) == 1 and window.last_id == 3


def test_the_window_grows_past_its_initial_capacity_keeping_every_ticket():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(100, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    window = Window(DIM, capacity=4)
    for n in range(100):
        window.add(1000 + n, 50.0 + n * 0.5, vectors[n])
    assert len(window) == 100
    assert window.last_id == 1099
    assert len(window.ids) >= 100
    live = slice(window.start, window.end)
    assert window.ids[live].tolist() == list(range(1000, 1100))
    np.testing.assert_array_equal(window.times[live], 50.0 + np.arange(100) * 0.5)
    np.testing.assert_array_equal(window.vectors[live], vectors)
    ids, scores = window.similarities(vectors[37])
    assert ids.tolist() == list(range(1000, 1100))
    np.testing.assert_allclose(scores, vectors @ vectors[37], rtol=1e-6, atol=1e-6)
    assert scores[37] == pytest.approx(1.0, abs=1e-6)


def test_compaction_after_eviction_keeps_ids_vectors_and_times():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(400, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    window = Window(DIM, capacity=16)
    capacities = set()
    for n in range(400):  # a sliding window of 6 tickets: never more than half the capacity
        window.add(n + 1, float(n), vectors[n])
        window.evict_before(float(n) - 5)
        capacities.add(len(window.ids))
        assert len(window) == min(n + 1, 6)
        assert window.last_id == n + 1
        live = slice(window.start, window.end)
        assert window.ids[live].tolist() == list(range(max(1, n - 4), n + 2))
    assert capacities == {16}, "a mostly evicted window compacts in place instead of growing"
    live = slice(window.start, window.end)
    assert window.ids[live].tolist() == list(range(395, 401))
    np.testing.assert_array_equal(window.times[live], np.arange(394, 400, dtype=float))
    np.testing.assert_array_equal(window.vectors[live], vectors[394:400])
    ids, scores = window.similarities(vectors[397])
    assert ids.tolist() == list(range(395, 401))
    np.testing.assert_allclose(scores, vectors[394:400] @ vectors[397], rtol=1e-6, atol=1e-6)


def test_a_mostly_live_window_grows_instead_of_compacting():
    window = Window(DIM, capacity=16)
    for n in range(40):  # a sliding window of 10: more than half of 16, so it must grow
        window.add(n + 1, float(n), axis(n % DIM))
        window.evict_before(float(n) - 9)
    assert len(window.ids) > 16
    live = slice(window.start, window.end)
    assert window.ids[live].tolist() == list(range(31, 41))
    np.testing.assert_array_equal(window.vectors[live], [axis(n % DIM) for n in range(30, 40)])


def test_a_window_of_capacity_one_still_grows():
    window = Window(DIM, capacity=1)
    for n in range(5):
        window.add(n + 1, float(n), axis(n))
    assert len(window) == 5
    assert window.similarities(axis(3))[1].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]


# -- decide: opening an incident -------------------------------------------------------------

def test_no_incident_with_storm_count_similar_tickets_including_the_new_one():
    window = filled([near(0, k) for k in range(9)])  # 9 in the window + the new one = 10
    decision = decide(near(0, 99), window, set(), {}, POLICY)
    assert not decision.opens_incident
    assert decision.join_incident is None
    assert decision.open_with == [] and decision.centroid is None


def test_an_incident_opens_with_more_than_storm_count_similar_tickets():
    window = filled([near(0, k) for k in range(10)])  # 10 in the window + the new one = 11
    decision = decide(near(0, 99), window, set(), {}, POLICY)
    assert decision.opens_incident
    assert decision.join_incident is None
    assert decision.open_with == list(range(1, 11))
    assert decision.similarity >= POLICY.similarity


def test_storm_count_one_opens_with_one_similar_ticket_in_the_window():
    policy = StormPolicy(similarity=0.8, storm_count=1, window_seconds=60.0)
    assert not decide(axis(0), Window(DIM), set(), {}, policy).opens_incident
    decision = decide(axis(0), filled([near(0, 1)]), set(), {}, policy)
    assert decision.open_with == [1]


def test_tickets_already_in_an_incident_are_not_counted():
    window = filled([near(0, k) for k in range(12)])  # ids 1..12
    assert decide(near(0, 99), window, set(), {}, POLICY).opens_incident
    linked = {2, 5, 7}  # 9 free similar tickets + the new one: not more than 10
    decision = decide(near(0, 99), window, linked, {}, POLICY)
    assert not decision.opens_incident
    linked = {2, 5}  # 10 free + the new one: opens, without the linked ones
    decision = decide(near(0, 99), window, linked, {}, POLICY)
    assert decision.opens_incident
    assert decision.open_with == [i for i in range(1, 13) if i not in linked]


def test_linked_ids_outside_the_window_change_nothing():
    window = filled([near(0, k) for k in range(10)])
    decision = decide(near(0, 99), window, {500, 501}, {}, POLICY)
    assert decision.open_with == list(range(1, 11))


def test_dissimilar_tickets_in_the_window_are_not_members():
    similar = [near(0, k) for k in range(10)]
    others = [axis(3), unit(1, 0, 0, 0, 0, 1), axis(5), -axis(0)]  # cosine 0, 0.71, 0, -1
    vectors = similar[:5] + others[:2] + similar[5:] + others[2:]
    window = filled(vectors)  # ids 1..14; dissimilar at 6, 7, 13, 14
    decision = decide(near(0, 99), window, set(), {}, POLICY)
    assert decision.opens_incident
    assert decision.open_with == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12]
    assert decision.similarity == pytest.approx(
        min(float(v @ near(0, 99)) for v in similar), abs=1e-6)


def test_dissimilar_tickets_do_not_make_up_the_count():
    window = filled([near(0, k) for k in range(9)] + [axis(4)] * 5)
    assert not decide(near(0, 99), window, set(), {}, POLICY).opens_incident


def test_only_tickets_still_in_the_window_count():
    window = filled([near(0, k) for k in range(12)], start_time=1000.0)  # times 1000..1011
    window.evict_before(1002.0)  # 10 left + new one: still opens
    assert decide(near(0, 99), window, set(), {}, POLICY).open_with == list(range(3, 13))
    window.evict_before(1003.0)  # 9 left + new one: does not
    assert not decide(near(0, 99), window, set(), {}, POLICY).opens_incident


def test_a_new_incident_centroid_is_unit_length_and_averages_members_and_new_ticket():
    members = [near(0, k) for k in range(10)]
    window = filled(members)
    new = near(0, 99)
    decision = decide(new, window, set(), {}, POLICY)
    assert decision.centroid is not None
    assert decision.centroid.dtype == np.float32
    assert float(np.linalg.norm(decision.centroid)) == pytest.approx(1.0, abs=1e-6)
    expected = np.sum(members + [new], axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(decision.centroid, expected, atol=1e-6)
    for vector in members + [new]:
        assert float(decision.centroid @ vector) >= POLICY.similarity


# -- decide: joining an incident -------------------------------------------------------------

def test_a_ticket_close_to_an_open_incident_joins_it():
    incidents = {42: axis(0)}
    decision = decide(near(0, 1), Window(DIM), set(), incidents, POLICY)
    assert decision.join_incident == 42
    assert not decision.opens_incident
    assert decision.similarity == pytest.approx(float(axis(0) @ near(0, 1)), abs=1e-6)


def test_a_ticket_joins_the_best_of_several_incidents():
    incidents = {1: unit(1, 1), 2: unit(1, 0.1), 3: unit(0, 0, 1)}  # cosines 0.71, 0.99, 0
    decision = decide(axis(0), Window(DIM), set(), incidents, POLICY)
    assert decision.join_incident == 2
    assert decision.similarity == pytest.approx(float(unit(1, 0.1) @ axis(0)), abs=1e-6)
    incidents = {7: unit(1, 0.3), 8: unit(1, 0.2), 9: unit(1, 0.4)}  # all above 0.8
    assert decide(axis(0), Window(DIM), set(), incidents, POLICY).join_incident == 8


def test_a_ticket_exactly_at_the_threshold_joins():
    vector = unit(0.8, 0.6)  # cosine with axis 0 is 0.8 (in float32, within rounding)
    policy = StormPolicy(similarity=float(vector @ axis(0)), storm_count=10,
                         window_seconds=300.0)
    assert decide(vector, Window(DIM), set(), {3: axis(0)}, policy).join_incident == 3


def test_a_ticket_below_the_threshold_does_not_join():
    incidents = {1: axis(1), 2: unit(1, 1)}  # cosines 0 and 0.71 with axis 0
    decision = decide(axis(0), Window(DIM), set(), incidents, POLICY)
    assert decision.join_incident is None
    assert not decision.opens_incident
    assert decision == Decision()


def test_joining_takes_precedence_over_opening_a_new_incident():
    window = filled([near(0, k) for k in range(20)])
    decision = decide(near(0, 99), window, set(), {6: axis(0)}, POLICY)
    assert decision.join_incident == 6
    assert decision.open_with == []


def test_a_storm_far_from_every_open_incident_opens_a_new_one():
    window = filled([near(2, k) for k in range(10)])
    decision = decide(near(2, 99), window, set(), {6: axis(0)}, POLICY)
    assert decision.join_incident is None
    assert decision.open_with == list(range(1, 11))


# -- joined, centroid, bytes -----------------------------------------------------------------

def test_joined_keeps_unit_length_and_moves_toward_the_new_vector():
    current, vector = axis(0), unit(1, 1)
    before = float(current @ vector)
    after = joined(current, 3, vector)
    assert after.dtype == np.float32
    assert float(np.linalg.norm(after)) == pytest.approx(1.0, abs=1e-6)
    assert float(after @ vector) > before
    expected = unit(3, 0) * 3 + vector
    np.testing.assert_allclose(after, expected / np.linalg.norm(expected), atol=1e-6)


def test_joined_moves_less_the_more_tickets_an_incident_has():
    vector = axis(1)
    small, large = joined(axis(0), 1, vector), joined(axis(0), 50, vector)
    assert float(small @ vector) > float(large @ vector) > 0.0
    assert float(large @ axis(0)) > float(small @ axis(0))


def test_joining_the_same_vector_leaves_the_centroid_in_place():
    np.testing.assert_allclose(joined(unit(1, 2, 3), 4, unit(1, 2, 3)), unit(1, 2, 3), atol=1e-6)


def test_joined_equals_the_centroid_of_all_the_tickets():
    tickets = [near(0, k) for k in range(5)]
    running = centroid(np.vstack(tickets[:1]))
    for count, vector in enumerate(tickets[1:], start=1):
        running = joined(running, count, vector)
    # the running mean of unit vectors is only approximated (the centroid is renormalised at
    # every step), but close tickets keep it within a hair of the true mean's direction
    assert float(running @ centroid(np.vstack(tickets))) > 0.9999


def test_the_centroid_of_opposite_vectors_does_not_divide_by_zero():
    result = centroid(np.vstack([axis(0), -axis(0)]))
    assert np.all(np.isfinite(result))
    assert float(np.linalg.norm(result)) == 0.0


def test_vectors_round_trip_through_bytes():
    vector = unit(0.3, -0.2, 0.9, 0.1, 0, 0, -0.5, 0.25)
    blob = to_bytes(vector)
    assert isinstance(blob, bytes) and len(blob) == DIM * 4
    back = from_bytes(blob)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, vector)


def test_float64_vectors_are_stored_as_float32():
    vector = np.linspace(-1, 1, DIM)
    back = from_bytes(to_bytes(vector))
    assert len(to_bytes(vector)) == DIM * 4
    np.testing.assert_allclose(back, vector, rtol=1e-7, atol=1e-7)
    assert from_bytes(to_bytes(back)).tobytes() == back.tobytes()


# -- the lift detector: a topic's jump over its usual rate -------------------------------------

LIFT = StormPolicy(similarity=0.8, storm_count=10, window_seconds=300.0, min_lift=5.0,
                   copy_similarity=0.999, min_history=20)
NOW = 100_000.0


def history_and_recent(history, recent):
    """`history` tickets hours before NOW, then `recent` tickets within the last minutes."""
    window = Window(DIM)
    for n, vector in enumerate(history):
        window.add(n + 1, NOW - 7_200 + n, vector)
    for n, vector in enumerate(recent):
        window.add(len(history) + n + 1, NOW - 100 + n, vector)
    return window


def test_a_topic_that_jumps_over_its_usual_rate_opens_an_incident():
    history = [near(k % 4 + 3, k) for k in range(40)]  # other topics only
    recent = [near(0, k) for k in range(11)] + [near(5, k) for k in range(20)]
    decision = decide(near(0, 11), history_and_recent(history, recent), set(), {}, LIFT, NOW)
    assert decision.opens_incident and len(decision.open_with) == 11


def test_a_topic_as_frequent_as_usual_opens_nothing_however_many_reports():
    # one ticket in three is about topic 0, in the history as in the last minutes
    history = [near(0 if k % 3 == 0 else 3 + k % 4, k) for k in range(90)]
    recent = [near(0 if k % 3 == 0 else 3 + k % 4, k) for k in range(60)]
    decision = decide(near(0, 60), history_and_recent(history, recent), set(), {}, LIFT, NOW)
    assert not decision.opens_incident


def test_without_enough_history_only_near_copies_can_open_an_incident():
    similar = [near(0, k) for k in range(12)]
    assert not decide(near(0, 12), history_and_recent([], similar), set(), {}, LIFT,
                      NOW).opens_incident
    copies = [axis(0)] * 11
    assert decide(axis(0), history_and_recent([], copies), set(), {}, LIFT, NOW).opens_incident


def test_only_the_last_minutes_are_members_of_a_new_incident():
    history = [near(0, k) for k in range(3)] + [near(4, k) for k in range(40)]
    recent = [near(0, k) for k in range(11)]
    window = history_and_recent(history, recent)
    decision = decide(near(0, 11), window, set(), {}, LIFT, NOW)
    assert decision.opens_incident and min(decision.open_with) > len(history)


def test_joining_an_incident_uses_its_own_threshold():
    incident = {7: axis(0)}
    policy = StormPolicy(similarity=0.5, storm_count=10, window_seconds=300.0,
                         join_similarity=0.9)
    assert decide(unit(1.0, 1.0), Window(DIM), set(), incident, policy).join_incident is None
    assert decide(unit(1.0, 0.1), Window(DIM), set(), incident, policy).join_incident == 7
