"""Choose the reader for an L1C source (SAFE folder/zip, STAC item, array scene)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2a.errors import InputError
from l2a.io.l1c import L1CProduct

#: Prefix of array-scene names, e.g. ``scene:slovenia:2015-07-11`` or ``scene:betsiboka``.
SCENE_PREFIX = "scene:"


def open_any(source: str | Path | Any, *, tile: str | None = None) -> L1CProduct:
    """Open ``source`` with the reader that fits it (see :func:`l2a.io.open_l1c`)."""
    if not isinstance(source, str | Path):
        # a pystac.Item (duck-typed: avoid importing pystac for the common case)
        if isinstance(source, dict) or (hasattr(source, "assets") and hasattr(source, "properties")):
            from l2a.io.stac_l1c import open_stac_item

            return open_stac_item(source)
        raise InputError(repr(source), "not an L1C source: give a SAFE folder or zip, a STAC item or a scene name")
    text = str(source)
    if text.startswith(SCENE_PREFIX):
        from l2a.io.scenes import open_scene

        return open_scene(text[len(SCENE_PREFIX):])
    if text.startswith(("http://", "https://")) or text.endswith(".json"):
        from l2a.io.stac_l1c import open_stac_item

        return open_stac_item(text)
    path = Path(text)
    if not path.exists():
        from l2a.io.scenes import list_scenes

        if text in list_scenes():
            from l2a.io.scenes import open_scene

            return open_scene(text)
        raise InputError(path, f"no such file or folder (array scenes are named {SCENE_PREFIX}NAME)")
    from l2a.io.safe import open_safe

    return open_safe(path, tile=tile)
