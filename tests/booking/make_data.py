"""Writes bookings.csv: restaurant booking requests in free text -> one fixed record format (seeded, reproducible).

    python tests/booking/make_data.py
"""

import csv
import os
import random

NAMES = ["Ana Silva", "Ben Okafor", "Chloe Martin", "Dev Patel", "Eva Novak", "Felix Braun", "Gia Rossi", "Hana Sato",
         "Ivan Petrov", "Jade Wong", "Kofi Mensah", "Lena Berg", "Marco Ruiz", "Nina Kaur", "Omar Haddad", "Pia Larsen"]
RESTAURANTS = ["Luigi's", "Blue Lotus", "The Oak Room", "Casa Verde", "Sakura", "Le Petit Four", "Harbor Grill", "Spice Route"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIMES = ["6 pm", "6:30 pm", "7 pm", "7:30 pm", "8 pm", "8:15 pm", "12:30 pm", "1 pm"]
PATTERNS = [
    "Hi, could you book a table for {g} at {r} on {d} at {t}? The name is {n}.",
    "{n} here. I'd like a table for {g} people at {r}, {d} {t}.",
    "Please reserve {r} for {d} at {t}, party of {g}, under {n}.",
    "Table for {g} on {d}, {t}, at {r} please. Booking name: {n}.",
    "Can I get a reservation at {r}? {g} guests, {d} around {t}. It's for {n}.",
    "Book {r} for {n}: {g} of us on {d} at {t}.",
]


def main() -> None:
    rng = random.Random(47)
    rows = []
    for split, count in (("train", 64), ("validation", 8), ("test", 24)):
        for _ in range(count):
            n, r, d, t, g = rng.choice(NAMES), rng.choice(RESTAURANTS), rng.choice(DAYS), rng.choice(TIMES), rng.randint(2, 9)
            rows.append({"request": rng.choice(PATTERNS).format(n=n, r=r, d=d, t=t, g=g),
                         "booking": f"name={n} | restaurant={r} | day={d} | time={t} | guests={g}", "split": split})
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bookings.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["request", "booking", "split"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
