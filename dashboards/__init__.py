"""The l2a production dashboard (Panel app): see ``dashboards/README.md``."""
