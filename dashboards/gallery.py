"""Clickable quicklook gallery (a Panel ``JSComponent``) and server-side thumbnails."""

from __future__ import annotations

import base64
import functools
import io
import os
from typing import Any

import param
from panel.custom import JSComponent

__all__ = ["QuicklookGallery", "thumbnail_uri"]

#: Longest side (pixels) of the gallery thumbnails, made on the server from the quicklook JPEG.
THUMBNAIL_SIZE = 192


@functools.lru_cache(maxsize=4096)
def _thumbnail(path: str, mtime: float, size: int) -> str:
    from PIL import Image

    with Image.open(path) as src:
        im = src.convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_uri(path: str | None, size: int = THUMBNAIL_SIZE) -> str:
    """A small JPEG data URI of a quicklook file ("" when the file is missing or unreadable)."""
    if not path or "://" in path:
        return path or ""
    try:
        return _thumbnail(path, os.stat(path).st_mtime, size)
    except OSError:
        return ""


class QuicklookGallery(JSComponent):
    """A grid of quicklooks with date, cloud cover and mode; a click sets :attr:`selected`.

    ``items`` holds dicts with ``id``, ``src`` (image URL or data URI), ``date``, ``cloud``
    (percent), ``mode`` and ``tile``.
    """

    items = param.List(default=[], doc="Quicklooks shown, newest first.")
    selected = param.String(default="", doc="Item id of the last quicklook clicked.")

    _esm = """
    export function render({ model, el }) {
      const grid = document.createElement("div");
      grid.className = "ql-grid";
      el.appendChild(grid);
      function draw() {
        grid.innerHTML = "";
        for (const it of model.items) {
          const card = document.createElement("figure");
          card.className = "ql-card" + (it.id === model.selected ? " ql-selected" : "");
          card.dataset.item = it.id;
          card.title = "Open " + it.id;
          const img = document.createElement("img");
          img.src = it.src;
          img.alt = "quicklook " + it.date;
          img.className = "ql-img";
          const cap = document.createElement("figcaption");
          cap.innerHTML = "<b>" + it.date + "</b> T" + it.tile + "<br>cloud " +
            it.cloud + " % &middot; " + it.mode;
          card.appendChild(img);
          card.appendChild(cap);
          card.addEventListener("click", () => { model.selected = it.id; });
          grid.appendChild(card);
        }
        if (model.items.length === 0) {
          grid.innerHTML = "<p class='ql-empty'>No published product for this site yet.</p>";
        }
      }
      draw();
      model.on("items", draw);
      model.on("selected", draw);
    }
    """

    _stylesheets = [  # noqa: RUF012
        """
        .ql-grid { display: flex; flex-wrap: wrap; gap: 10px; }
        .ql-card { margin: 0; width: 196px; cursor: pointer; border: 2px solid #ddd;
                   border-radius: 6px; padding: 2px; background: #fff; }
        .ql-card:hover { border-color: #0072b5; }
        .ql-selected { border-color: #d62728; }
        .ql-img { width: 192px; height: 192px; object-fit: cover; display: block; }
        figcaption { font-size: 12px; padding: 3px; line-height: 1.3; }
        .ql-empty { color: #666; }
        """
    ]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
