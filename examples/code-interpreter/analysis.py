"""The code-interpreter scenario's analysis: what an agent's generated code would do.

Reads a CSV of sales (date,region,product,units,price) in chunks, so a file larger
than the sandbox's memory still works, and writes into OUT_DIR:
  summary.json  rows, revenue per region, top product, units per month
  chart.png     revenue per region (bar chart)

    python3 analysis.py DATA.csv OUT_DIR
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display in a sandbox: render to files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main(path, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rows = 0
    revenue = pd.Series(dtype="float64")
    products = pd.Series(dtype="float64")
    months = pd.Series(dtype="int64")
    for chunk in pd.read_csv(path, chunksize=1_000_000, parse_dates=["date"]):
        rows += len(chunk)
        chunk["revenue"] = chunk["units"] * chunk["price"]
        revenue = revenue.add(chunk.groupby("region")["revenue"].sum(), fill_value=0)
        products = products.add(chunk.groupby("product")["revenue"].sum(), fill_value=0)
        by_month = chunk.groupby(chunk["date"].dt.strftime("%Y-%m"))["units"].sum()
        months = months.add(by_month, fill_value=0)
    revenue = revenue.sort_index()
    summary = {
        "rows": rows,
        "revenue_by_region": {k: round(float(v), 2) for k, v in revenue.items()},
        "top_product": str(products.idxmax()) if rows else None,
        "units_by_month": {k: int(v) for k, v in months.sort_index().items()},
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(list(revenue.index), list(revenue.values), color="#4c72b0")
    ax.set_title(f"Revenue by region ({rows:,} sales)")
    ax.set_ylabel("revenue")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "chart.png"), dpi=100)
    print(json.dumps({"rows": rows, "regions": len(revenue)}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: analysis.py DATA.csv OUT_DIR")
    main(sys.argv[1], sys.argv[2])
