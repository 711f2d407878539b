"""Automatic production: ingest, status database, planner and runner.

Modules are imported on demand (``import l2a.production`` stays light):

- :mod:`l2a.production.models`: SQLAlchemy models of the status database;
- :mod:`l2a.production.db`: :class:`~l2a.production.db.Database` (migrations, repository API);
- :mod:`l2a.production.inbox`, :mod:`l2a.production.ingest`: inbox scans and catalog searches
  registering products (identity: :mod:`l2a.io.identity`);
- :mod:`l2a.production.planner`: per-tile date order, modes, the late-product policy;
- :mod:`l2a.production.runner`: jobs on dask-distributed, verification, publication, resume;
- :mod:`l2a.production.commands`: the bodies of ``l2a ingest/run/watch/status``;
- :mod:`l2a.production.faults`: the kill points used by the exact-resume tests;
- ``site_template.toml``: the commented example configuration written by ``l2a init``
  (settings themselves live in :mod:`l2a.config`).
"""
