# Cells (issue 14): a region's tenants split across gateway fleets behind a front tier (docs/design/0005).
#   make bench-cells     100,000 tenants in 40 cells against 10,000 in 4 and a plain 2,500-tenant region, same
#                        run: first load, each cell's and the front's Envoy memory, one tenant's edit served;
#                        writes bench/results/cells_scale.{json,md} and cells_scale_memory.png (4-5 minutes here)
# (make bench-controlplane runs bench.cells after bench.controlplane, 3.6 minutes for both here: 10,000 tenants
# in 4 cells against the single-Envoy layout, and
# moving 1% of them to a new cell under load.)
.PHONY: bench-cells

bench-cells: setup
	$(BIN)/python -m bench.cells_scale
