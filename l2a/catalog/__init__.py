"""STAC side of the products: items (:mod:`l2a.catalog.stac_item`) and the static catalog
(:mod:`l2a.catalog.static`).

- :func:`l2a.catalog.stac_item.make_item` (product -> :class:`pystac.Item`),
  :func:`l2a.catalog.stac_item.verify_item` (re-check file checksums);
- :class:`l2a.catalog.static.StaticCatalog` (``catalog.json`` + one collection, atomic updates).

Imported lazily: ``import l2a.catalog`` loads neither pystac nor GDAL.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLLECTION_ID", "StaticCatalog", "make_item", "verify_item"]


def __getattr__(name: str) -> Any:
    if name in ("COLLECTION_ID", "make_item", "verify_item"):
        from l2a.catalog import stac_item

        return getattr(stac_item, name)
    if name == "StaticCatalog":
        from l2a.catalog.static import StaticCatalog

        return StaticCatalog
    raise AttributeError(name)
