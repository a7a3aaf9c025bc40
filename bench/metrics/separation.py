"""Matched vs mismatched cell-type pairs on the bundled datasets: do the metrics tell them apart?

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/metrics/separation.py

For each type (kang2018 cell_type with >= 60 cells, pbmc68k bulk_labels with >= 40), random halves of the
type are compared with each other (matched) and with as many cells of every other type (mismatched), in the
reference PCA embedding fitted on the whole dataset (gene_wasserstein on the 500 most variable genes).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    import pandas as pd

    from c2s_agent.data import read
    from c2s_agent.metrics.validation import separation, type_pairs

    pd.set_option("display.width", 200)
    pd.set_option("display.float_format", lambda v: f"{v:.4g}")
    for name, column, min_cells in (("kang2018", "cell_type", 60), ("pbmc68k", "bulk_labels", 40)):
        t = time.perf_counter()
        pairs = type_pairs(read(name), column, min_cells=min_cells)
        print(
            f"\n{name} ({column}, types with >= {min_cells} cells: {pairs.type.nunique()}, "
            f"{int((~pairs.matched).sum())} mismatched pairs) in {time.perf_counter() - t:.1f} s"
        )
        print(separation(pairs).to_string())
        per_type = pairs.groupby("type").apply(
            lambda g: pd.Series(
                {
                    "n": g.n.iloc[0],
                    "scfid_matched": g.loc[g.matched, "scfid"].iloc[0],
                    "scfid_nearest_other": g.loc[~g.matched, "scfid"].min(),
                    "nearest_other": g.loc[~g.matched].sort_values("scfid").other.iloc[0],
                }
            ),
            include_groups=False,
        )
        print(per_type.to_string())


if __name__ == "__main__":
    main()
