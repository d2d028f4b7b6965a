"""Check a labelled ticket file before it joins data/: every row valid (the trainer's own
loader), ids unique, the category and urgency mix, and no description too close to one in
the other files (TF-IDF cosine over word 1-2-grams, as data/README.md reports).

    .venv/bin/python data/check.py data/test-b.jsonl --against data/train.jsonl data/test.jsonl

Exits 1 when a row is invalid, an id repeats or a pair is closer than --max-cosine.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    from smart_support.training.data import DataError, load_tickets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--against", type=Path, nargs="*", default=[])
    parser.add_argument("--max-cosine", type=float, default=0.7)
    args = parser.parse_args()
    try:
        tickets = load_tickets(args.file)
        others = [t for path in args.against for t in load_tickets(path)]
    except DataError as exc:
        print(f"invalid: {exc}")
        return 1
    ids = Counter(json.loads(line)["id"] for line in args.file.read_text().splitlines()
                  if line.strip())
    repeated = [i for i, n in ids.items() if n > 1]
    print(f"{args.file}: {len(tickets)} tickets, categories "
          f"{dict(sorted(Counter(t.category for t in tickets).items()))}")
    bands = Counter("0.90-1.00" if t.urgency >= 0.9 else "0.60-0.89" if t.urgency >= 0.6
                    else "0.30-0.59" if t.urgency >= 0.3 else "0.00-0.29" for t in tickets)
    print(f"urgency bands {dict(sorted(bands.items(), reverse=True))}")
    texts = [t.description for t in tickets]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2)).fit(texts + [t.description for t in others])
    matrix = vectorizer.transform(texts)
    within = cosine_similarity(matrix)
    for i in range(len(texts)):
        within[i, i] = 0.0
    close = [(float(within[i, j]), f"{i + 1} ~ {j + 1} (this file)")
             for i in range(len(texts)) for j in range(i + 1, len(texts))
             if within[i, j] > args.max_cosine]
    if others:
        across = cosine_similarity(matrix, vectorizer.transform([t.description for t in others]))
        print(f"closest to the other files: cosine {across.max():.2f}")
        close += [(float(across[i, j]), f"line {i + 1} ~ line {j + 1} of the other files")
                  for i, j in zip(*(across > args.max_cosine).nonzero())]
    print(f"closest pair inside the file: cosine {within.max():.2f}")
    for score, where in sorted(close, reverse=True):
        print(f"  too close ({score:.2f}): {where}")
    if repeated:
        print(f"repeated ids: {repeated}")
    return 1 if close or repeated else 0


if __name__ == "__main__":
    sys.exit(main())
