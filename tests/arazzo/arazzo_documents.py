"""The reference workflow and its broken variants for the Arazzo tests, and copies of it with one
change, written beside a copy of the reference services' OpenAPI documents."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORDER = ROOT / "contracts" / "arazzo" / "order.arazzo.yaml"
FREE_ORDER = ROOT / "fixtures" / "arazzo" / "free_order_names_charge.arazzo.yaml"
NO_KEY = ROOT / "fixtures" / "arazzo" / "charge_retry_without_key.arazzo.yaml"


def edited(tmp_path: Path, *changes: tuple[str, str], text: str | None = None) -> Path:
    """The reference workflow with each (old, new) replaced once (each old must be there), in
    ``tmp_path/arazzo/``, its sources in ``tmp_path/openapi/``."""
    if not (tmp_path / "openapi").exists():
        shutil.copytree(ROOT / "contracts" / "openapi", tmp_path / "openapi")
    document = ORDER.read_text(encoding="utf-8") if text is None else text
    for old, new in changes:
        assert old in document, f"the reference workflow has no {old!r}"
        document = document.replace(old, new, 1)
    path = tmp_path / "arazzo" / "order.arazzo.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
