"""Pack simulation with PyBaMM (the only package that imports PyBaMM).

config (the YAML schema), variation (seeded draws), cell (one built PyBaMM model, stepped),
pack (parallel-group current split and voltage limits), scenario (one protocol run),
generate (``packtwin generate``: executors, resumable Zarr store).
"""
