"""Project-wide benchmarks (architecture §12): `python -m edge_tools.bench [--quick|--smoke] [--out FILE]`.

Each section measures its figures side by side in one run (ratios, never absolute goals across runs) and
returns a `SectionResult`; `report` turns them into one printed table and `docs/benchmarks.md`.
"""
