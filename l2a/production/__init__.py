"""Automatic production: identity of input products, the status database, and (later) the
ingest, planner, runner and packager built on them.

Modules are imported on demand (``import l2a.production`` stays light):

- :mod:`l2a.io.identity`: product names -> :class:`~l2a.io.identity.ProductKey`;
- :mod:`l2a.production.models`: SQLAlchemy models of the status database;
- :mod:`l2a.production.db`: :class:`~l2a.production.db.Database` (migrations, repository API);
- ``site_template.toml``: the commented example configuration written by ``l2a init``
  (settings themselves live in :mod:`l2a.config`).
"""
