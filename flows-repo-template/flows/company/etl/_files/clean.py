"""Keeps one day's valid orders: a customer, an amount of at least MIN_AMOUNT.

Usage: python clean.py RAW.csv CLEAN.csv (the day and the minimum come from the
environment variables DAY and MIN_AMOUNT, which the flow sets).
It prints a line ::{"outputs": {...}}:: that Headwater reads as the task's outputs.
"""

import csv
import json
import os
import sys


def valid(row: dict[str, str], day: str, min_amount: float) -> bool:
    if row["day"] != day or not row["customer"]:
        return False
    try:
        return float(row["amount_eur"]) >= min_amount
    except ValueError:
        return False


def main(source: str, target: str) -> None:
    day = os.environ["DAY"]
    min_amount = float(os.environ.get("MIN_AMOUNT", "0"))
    with open(source, newline="") as raw:
        rows = [row for row in csv.DictReader(raw) if row["day"] == day]
    kept = [row for row in rows if valid(row, day, min_amount)]
    with open(target, "w", newline="") as clean:
        writer = csv.DictWriter(clean, fieldnames=["order_id", "day", "customer", "amount_eur"])
        writer.writeheader()
        writer.writerows(kept)
    total = round(sum(float(row["amount_eur"]) for row in kept), 2)
    print(f"{day}: kept {len(kept)} of {len(rows)} orders")
    outputs = {"rows": len(kept), "dropped": len(rows) - len(kept), "total": total}
    print("::" + json.dumps({"outputs": outputs}) + "::")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
