"""The clicks dataset contract: which blob and double position holds which field.

Read from ``contracts/clicks_dataset.v1.json``; the loader, simulator, emulator tests and docs all
use this module, so a position is named in exactly one place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from loaders.settings import project_dir

CONTRACT_FILE = "contracts/clicks_dataset.v1.json"


@dataclass(frozen=True)
class Field:
    name: str
    column: str
    max_length: int | None = None
    pattern: re.Pattern[str] | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contract:
    version: int
    dataset: str
    index_max_bytes: int
    blobs: tuple[Field, ...]
    doubles: tuple[Field, ...]
    legacy_blob_count: int

    def blob(self, name: str) -> Field:
        return _by_name(self.blobs, name)

    def double(self, name: str) -> Field:
        return _by_name(self.doubles, name)

    def blob_position(self, name: str) -> int:
        """1-based position of a named field in the Worker's ``blobs`` array."""
        return self.blobs.index(self.blob(name)) + 1


def _by_name(fields: tuple[Field, ...], name: str) -> Field:
    for field in fields:
        if field.name == name:
            return field
    raise KeyError(f"the clicks contract has no field {name!r}")


@cache
def load_contract() -> Contract:
    raw = json.loads((project_dir() / CONTRACT_FILE).read_text())
    blobs = tuple(
        Field(
            name=item["name"],
            column=f"blob{item['position']}",
            max_length=item.get("max_length"),
            pattern=re.compile(item["pattern"]) if "pattern" in item else None,
            values=tuple(item.get("values", ())),
        )
        for item in sorted(raw["blobs"], key=lambda item: item["position"])
    )
    doubles = tuple(
        Field(name=item["name"], column=f"double{item['position']}")
        for item in sorted(raw["doubles"], key=lambda item: item["position"])
    )
    return Contract(
        version=raw["version"],
        dataset=raw["name"],
        index_max_bytes=raw["index"]["max_bytes"],
        blobs=blobs,
        doubles=doubles,
        legacy_blob_count=raw["legacy_blob_count"],
    )
