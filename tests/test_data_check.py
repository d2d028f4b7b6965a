"""data/check.py: the gate a labelled file passes before it joins data/."""
import subprocess
import sys
from pathlib import Path

from conftest import make_tickets, write_jsonl

CHECK = Path(__file__).resolve().parent.parent / "data" / "check.py"


def run_check(*args):
    return subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_a_clean_file_passes_with_its_mix_reported(tmp_path):
    rows = make_tickets(5, seed=1)
    for i, row in enumerate(rows):  # distinct texts, so no pair is near-identical
        row["description"] = f"ticket number {i} " + " ".join(f"w{i}x{j}" for j in range(8))
    result = run_check(write_jsonl(tmp_path / "new.jsonl", rows))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "15 tickets" in result.stdout and "'Billing': 5" in result.stdout


def test_a_copy_of_another_files_ticket_and_a_repeated_id_fail(tmp_path):
    other = make_tickets(5, seed=1)
    new = make_tickets(5, seed=2)
    new[0]["description"] = other[3]["description"]
    new[1]["id"] = new[2]["id"]
    result = run_check(write_jsonl(tmp_path / "new.jsonl", new), "--against",
                       write_jsonl(tmp_path / "train.jsonl", other))
    assert result.returncode == 1
    assert "too close (1.00): line 1 ~ line 4 of the other files" in result.stdout
    assert f"repeated ids: ['{new[1]['id']}']" in result.stdout


def test_an_invalid_row_is_refused_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "description": "hi", "category": "Billing", "urgency": 7}\n')
    result = run_check(path)
    assert result.returncode == 1 and "invalid" in result.stdout
