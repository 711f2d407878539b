"""Input and output: L1C readers (SAFE, STAC item, array scenes), DEM sources, writers."""

from l2a.io.l1c import AngleGrid, L1CMetadata, L1CProduct, open_l1c

__all__ = ["AngleGrid", "L1CMetadata", "L1CProduct", "open_l1c"]
