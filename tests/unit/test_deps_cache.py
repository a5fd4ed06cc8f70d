"""The dependency layer cache (packager/image/deps._cached_layer): a damaged or foreign entry is a miss, never a
crash; an intact one is a hit."""

from __future__ import annotations

import hashlib
import json

import pytest

from packager.image import deps


def _entry(root, key, meta, blob=b"layer bytes"):
    (root / "layers").mkdir(parents=True, exist_ok=True)
    (root / "layers" / f"{key}.tar.gz").write_bytes(blob)
    (root / "layers" / f"{key}.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))


GOOD = {"digest": "sha256:" + hashlib.sha256(b"layer bytes").hexdigest(), "size": 11, "diff_id": "sha256:" + "0" * 64,
        "uncompressed_size": 20, "created_by": "mlpack deps", "files": 3}


def test_an_intact_entry_is_a_hit(tmp_path):
    _entry(tmp_path, "k", {"layer": GOOD, "installed_bytes": 100, "stripped_bytes": 70})
    layer, installed, stripped = deps._cached_layer(tmp_path, "k", ())
    assert (layer.digest, layer.size, layer.files, installed, stripped) == (GOOD["digest"], 11, 3, 100, 70)


@pytest.mark.parametrize("meta", [
    "{not json",
    [],
    {"layer": []},
    {"layer": {}},
    {"layer": {k: v for k, v in GOOD.items() if k != "digest"}},
    {"layer": {**GOOD, "size": "eleven"}},
    {"layer": GOOD, "installed_bytes": None},
])
def test_a_damaged_or_foreign_entry_is_a_miss(tmp_path, meta):
    _entry(tmp_path, "k", meta)
    assert deps._cached_layer(tmp_path, "k", ()) is None


def test_an_entry_whose_blob_does_not_match_is_dropped(tmp_path):
    _entry(tmp_path, "k", {"layer": GOOD}, blob=b"other bytes")
    assert deps._cached_layer(tmp_path, "k", ()) is None
    assert not list((tmp_path / "layers").iterdir())
