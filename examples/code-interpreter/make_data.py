"""Writes a deterministic sales CSV of about SIZE bytes (on the host, no dependencies).

    python3 make_data.py OUT.csv SIZE_BYTES
Prints the row count and the expected revenue per region as JSON, for checking.
"""
import json
import random
import sys

REGIONS = ["north", "south", "east", "west"]
PRODUCTS = ["widget", "gadget", "gizmo", "doohickey"]


def main(path, size):
    rng = random.Random(42)
    rows = 0
    revenue = {r: 0 for r in REGIONS}  # in cents, exact
    written = 0
    with open(path, "w") as f:
        header = "date,region,product,units,price\n"
        f.write(header)
        written += len(header)
        while written < size:
            lines = []
            for _ in range(10_000):
                region = REGIONS[rng.randrange(4)]
                units = rng.randrange(1, 20)
                cents = rng.randrange(100, 10_000)
                revenue[region] += units * cents
                lines.append(
                    f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d},"
                    f"{region},{PRODUCTS[rng.randrange(4)]},{units},{cents // 100}.{cents % 100:02d}\n"
                )
            block = "".join(lines)
            f.write(block)
            written += len(block)
            rows += len(lines)
    print(json.dumps({"rows": rows, "revenue_by_region": {r: revenue[r] / 100 for r in REGIONS}}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
