"""Writes data.csv: sentences about people moving, and the fixed record format the model must learn.

Run `python make_data.py` to regenerate (seeded, so the file is reproducible).
"""

import csv
import random

FIRST = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kofi", "Lena",
         "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Yusuf"]
LAST = ["Smith", "Rossi", "Wang", "Kowalski", "Yilmaz", "Haddad", "Okafor", "Moreau", "Silva", "Berg", "Novak", "Tanaka"]
CITIES = ["Paris", "Lagos", "Lima", "Oslo", "Kyoto", "Cairo", "Denver", "Porto", "Hanoi", "Quito", "Dublin", "Perth",
          "Zurich", "Accra", "Austin", "Seville"]
PATTERNS = [
    "{person} moved to {city} in {year}.",
    "In {year}, {person} relocated to {city}.",
    "{person} has lived in {city} since {year}.",
    "Back in {year} {person} packed up and went to {city}.",
    "{city} became home for {person} in {year}.",
    "After {year}, {person} settled in {city} for good.",
]


def main(rows: int = 120, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open("data.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "record"])
        for _ in range(rows):
            person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            city, year = rng.choice(CITIES), rng.randint(1990, 2024)
            sentence = rng.choice(PATTERNS).format(person=person, city=city, year=year)
            writer.writerow([sentence, f"person={person} | city={city} | year={year}"])


if __name__ == "__main__":
    main()
