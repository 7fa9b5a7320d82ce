"""Cells: a region's tenants split across gateway fleets of bounded size behind a front tier
(docs/design/0005)."""
