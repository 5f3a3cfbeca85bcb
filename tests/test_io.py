"""rstar_jax.io (atomic writes, JSONL) and rstar_jax.lru (the bounded LRU)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from rstar_jax.io import (
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    read_jsonl_numbered,
    write_jsonl,
)
from rstar_jax.lru import LRU, nbytes


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- atomic writes ----


def test_atomic_write_text_and_json(tmp_path):
    path = tmp_path / "sub" / "a.json"  # parent folders are created

    class T:
        def __str__(self):
            return "t"

    atomic_write_json(path, {"b": 1, "a": [1, 2], "when": T()})  # what JSON cannot hold is str()'d
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ],\n  "when": "t"\n}'  # no newline
    atomic_write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode() and _names(path.parent) == ["a.json"]


def test_atomic_file_gets_the_mode_open_would_give(tmp_path):
    path = tmp_path / "m.txt"
    atomic_write_text(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    "write",
    [
        lambda p: atomic_write_text(p, object()),  # f.write fails on a non-string
        lambda p: atomic_write_json(p, {"x": float("nan"), "bad": {1j: 2}}),  # json.dump fails on a complex key
        lambda p: write_jsonl(p, [{"a": 1}, {"b": 2}, {"c": object()}]),  # the third row does not serialise
        lambda p: write_jsonl(p, ({"a": i} if i < 2 else 1 / 0 for i in range(3))),  # the producer fails
        lambda p: write_jsonl(p, ['{"a": 1}', '{"a":\n 2}']),  # a pre-serialised row spanning lines
    ],
)
def test_failure_mid_write_leaves_old_file_and_no_temp(tmp_path, write):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"old": True}])
    before = path.read_bytes()
    with pytest.raises(Exception):
        write(path)
    assert path.read_bytes() == before
    assert _names(tmp_path) == ["data.jsonl"]


def test_interrupted_write_of_a_new_file_leaves_nothing(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path, "wb") as f:
            f.write(b"partial")
            assert not path.exists()  # nothing at the target while writing
            raise KeyboardInterrupt
    assert _names(tmp_path) == []
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(path, "a"):
            pass


# ---- JSONL ----


def test_jsonl_round_trip_and_bytes(tmp_path):
    rows = [{"id": "p1", "q": 0.1, "text": 'é ∑ "quoted"\nline', "z": None, "a": [1, 2]}, {"b": 1e300}]
    path = tmp_path / "deep" / "rows.jsonl"
    assert write_jsonl(path, iter(rows + [json.dumps({"pre": 1})])) == 3
    assert list(read_jsonl(path)) == rows + [{"pre": 1}]
    # the bytes every writer produced before: json.dumps(row, ensure_ascii=False), one a line
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + '{"pre": 1}\n'
    assert path.read_bytes() == expected.encode("utf-8")
    write_jsonl(path, [])
    assert path.read_bytes() == b"" and list(read_jsonl(path)) == []


def test_read_jsonl_skips_blank_lines_and_builds(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"n": 1}\n\n   \n{"n": 2}\n')
    assert list(read_jsonl_numbered(path)) == [(1, {"n": 1}), (4, {"n": 2})]
    assert list(read_jsonl(path, lambda d: d["n"] * 10)) == [10, 20]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"n": 1}\n\n{"n": \n{"n": 4}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        list(read_jsonl(path))
    rows = read_jsonl(path)
    assert next(rows) == {"n": 1}  # lazy: lines before the bad one are yielded
    path.write_text('{"n": 1}\n{"m": 2}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: 'n'"):  # a KeyError from build
        list(read_jsonl(path, lambda d: d["n"]))


# ---- LRU ----


class Blob:
    def __init__(self, n):
        self.nbytes = n


def test_lru_counts_entries_and_evicts_least_recent():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recent
    lru.put("c", 3)  # "b" goes
    assert "b" not in lru and lru.get("b") is None and len(lru) == 2 and lru.used == 2
    assert (lru.get("a"), lru.get("c"), lru.get("b", "none")) == (1, 3, "none")
    assert (lru.hits, lru.misses) == (3, 2)
    lru.put("a", None)  # a stored None is a hit, not a miss
    assert lru.get("a", "missing") is None and lru.hits == 4
    lru.clear()
    assert len(lru) == 0 and lru.used == 0
    with pytest.raises(ValueError):
        LRU(-1)


def test_lru_bytes_bound():
    lru = LRU(100, size=nbytes)
    lru.put("a", Blob(40))
    lru.put("b", Blob(40))
    lru.put("a", Blob(40))  # putting "a" again makes it the most recent
    lru.put("c", Blob(40))  # over budget: "b" goes
    assert lru.pop("b") is None and len(lru) == 2 and lru.used == 80
    lru.put("d", Blob(50))  # 130 bytes: "a", the least recent, goes and 90 fit
    assert "a" not in lru and "c" in lru and lru.used == 90
    lru.put("e", Blob(70))  # 160 bytes: "c" then "d" go
    assert "c" not in lru and "d" not in lru and lru.used == 70
    lru.put("e", Blob(10))  # replacing updates the total
    assert lru.used == 10 and lru.pop("e").nbytes == 10 and lru.pop("e") is None and lru.used == 0


def test_lru_item_bigger_than_bound_is_not_kept():
    lru = LRU(100, size=nbytes)
    lru.put("a", Blob(60))
    lru.put("big", Blob(101))
    assert "big" not in lru and "a" in lru and lru.used == 60  # nothing else was evicted for it
    lru.put("a", Blob(200))  # an oversized replacement drops the old value too
    assert "a" not in lru and lru.used == 0
    off = LRU(0)  # capacity 0 keeps nothing
    off.put("x", 1)
    assert len(off) == 0 and off.get("x") is None


def test_lru_size_taken_at_put():
    """A value mutated while cached (the proposer pops entries, edits and re-puts them) does not
    corrupt the total."""
    lru = LRU(100, size=lambda d: sum(b.nbytes for b in d.values()))
    entry = {"x": Blob(30), "y": Blob(30)}
    lru.put("k", entry)
    entry.pop("x")
    assert lru.pop("k") is entry and lru.used == 0


def test_the_sandbox_cache_name_still_works():
    from rstar_jax.sandbox import LRUCache

    cache = LRUCache(1)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.max_entries == 1 and b"a" not in cache and cache.get(b"b") == 2
    with pytest.raises(ValueError, match="max_entries"):
        LRUCache(-1)
