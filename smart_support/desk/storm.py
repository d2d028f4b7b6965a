"""Storm detection: many people reporting one incident in their own words, within minutes.

Pure numpy, no database and no Flask. Each new ticket's embedding (unit length, so cosine is
a dot product) is compared with the window of recent tickets:
- it joins an open incident when it is similar enough to the incident's centroid (the mean of
  its tickets, which sits closer to each report than two reports sit to each other);
- otherwise an incident opens, with the similar tickets of the last `window_seconds` that are
  in no incident yet, when MORE than `storm_count` of them (the new ticket included) are
    * near-copies (cosine >= `copy_similarity`): a count alone decides, or
    * similar (cosine >= `similarity`) AND their topic is at least `min_lift` times more
      frequent in the last minutes than in the history the window keeps (hours). A busy desk
      gets a dozen refund requests every five minutes; an outage makes one topic jump.
      Without `min_history` older tickets to compare with, only near-copies count.
Thresholds were chosen by measurement (bench/storms.py, README "Storm detection").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StormPolicy:
    similarity: float  # cosine at or above which two tickets report the same thing
    storm_count: int  # an incident opens when MORE than this many similar tickets arrive...
    window_seconds: float  # ...within this many seconds
    min_lift: float | None = None  # None: a count alone decides at `similarity`
    copy_similarity: float | None = None  # near-copies: a count alone decides
    min_history: int = 100  # older tickets needed before the lift is trusted
    join_similarity: float | None = None  # to an open incident's centroid; None: `similarity`


@dataclass
class Decision:
    join_incident: int | None = None  # the open incident this ticket belongs to
    open_with: list[int] = field(default_factory=list)  # window ticket ids for a new incident
    centroid: np.ndarray | None = None  # of the new incident: its members and the new ticket
    similarity: float = 0.0  # best similarity that led to the decision

    @property
    def opens_incident(self) -> bool:
        return bool(self.open_with)


class Window:
    """The recent tickets' ids, arrival times and embeddings, oldest first; grows in blocks
    so that adding a ticket is amortised O(dimension)."""

    def __init__(self, dimension: int, capacity: int = 1024):
        capacity = max(1, capacity)
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.times = np.zeros(capacity, dtype=np.float64)
        self.vectors = np.zeros((capacity, dimension), dtype=np.float32)
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def last_id(self) -> int:
        return int(self.ids[self.end - 1]) if len(self) else 0

    def add(self, ticket_id: int, at: float, vector: np.ndarray) -> None:
        if self.end == len(self.ids):
            self._make_room()
        self.ids[self.end], self.times[self.end] = ticket_id, at
        self.vectors[self.end] = vector
        self.end += 1

    def evict_before(self, oldest: float) -> None:
        live = self.times[self.start:self.end]
        self.start += int(np.searchsorted(live, oldest, side="left"))

    def similarities(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosine) of every ticket in the window."""
        return (self.ids[self.start:self.end],
                self.vectors[self.start:self.end] @ vector)

    def _make_room(self) -> None:
        size = len(self)
        if size * 2 > len(self.ids):  # mostly live: grow
            capacity = len(self.ids) * 2
            ids, times = np.zeros(capacity, np.int64), np.zeros(capacity, np.float64)
            vectors = np.zeros((capacity, self.vectors.shape[1]), np.float32)
        else:  # mostly evicted: compact in place
            ids, times, vectors = self.ids, self.times, self.vectors
        ids[:size] = self.ids[self.start:self.end]
        times[:size] = self.times[self.start:self.end]
        vectors[:size] = self.vectors[self.start:self.end]
        self.ids, self.times, self.vectors = ids, times, vectors
        self.start, self.end = 0, size


def decide(vector: np.ndarray, window: Window, linked: set[int],
           incidents: dict[int, np.ndarray], policy: StormPolicy,
           now: float | None = None) -> Decision:
    """What to do with a new ticket whose embedding is `vector`, arriving at `now` (seconds;
    None: every window ticket is recent). `linked` holds the ids of window tickets already in
    an incident; `incidents` maps open incidents to centroids."""
    if incidents:
        ids = list(incidents)
        scores = np.stack([incidents[i] for i in ids]) @ vector
        best = int(np.argmax(scores))
        join_at = policy.similarity if policy.join_similarity is None \
            else policy.join_similarity
        if scores[best] >= join_at:
            return Decision(join_incident=ids[best], similarity=float(scores[best]))
    window_ids, scores = window.similarities(vector)
    times = window.times[window.start:window.end]
    recent = times >= now - policy.window_seconds if now is not None \
        else np.ones(len(window_ids), bool)
    # one vectorised test instead of a Python loop over up to 20,000 window ids
    free = ~np.isin(window_ids, np.fromiter(linked, dtype=np.int64, count=len(linked))) \
        if linked else np.ones(len(window_ids), bool)
    candidates = recent & free
    close = scores >= policy.similarity
    if policy.min_lift is None:
        return _opening(vector, window, window_ids, scores, close & candidates, policy)
    if policy.copy_similarity is not None:
        copies = (scores >= policy.copy_similarity) & candidates
        if int(copies.sum()) + 1 > policy.storm_count:
            return _opening(vector, window, window_ids, scores, copies, policy)
    older = ~recent
    if int(older.sum()) < policy.min_history:
        return Decision()
    similar_now = int((close & recent).sum()) + 1
    usual_share = (int((close & older).sum()) + 1) / (int(older.sum()) + 1)
    expected_now = (int(recent.sum()) + 1) * usual_share
    if similar_now >= policy.min_lift * expected_now:
        return _opening(vector, window, window_ids, scores, close & candidates, policy)
    return Decision()


def _opening(vector, window: Window, window_ids, scores, members: np.ndarray,
             policy: StormPolicy) -> Decision:
    """A new incident of `members` (a mask over the window) and the new ticket, if they are
    more than `storm_count`."""
    if int(members.sum()) + 1 <= policy.storm_count:
        return Decision()
    vectors = window.vectors[window.start:window.end][members]
    return Decision(open_with=[int(i) for i in window_ids[members]],
                    centroid=centroid(np.vstack([vectors, vector[None, :]])),
                    similarity=float(scores[members].min()))


def joined(incident_centroid: np.ndarray, ticket_count: int, vector: np.ndarray) -> np.ndarray:
    """The centroid after one more ticket joins (the running mean's direction)."""
    return centroid(np.vstack([incident_centroid * ticket_count, vector[None, :]]))


def centroid(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.sum(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
