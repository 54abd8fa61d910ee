"""Write data/people.csv: a table of people shaped like the public court and
jail extracts doppel's users upload, not like a test fixture.

What makes it hard, on purpose: names in lower case (`miguel hernandez`),
split `first` / `middle` / `last` columns, an upper-case `LAST, FIRST` column,
particles and apostrophes (`st. surin`, `o'neil`), names from six locales,
court case numbers (`13011352CF10A`) and member ids, dates of birth written
three ways, a long-tailed charge description, and ordinary categories.

    pip install faker==37.1.0
    python data/make_people.py          # deterministic: seed 2026

Faker's name lists are generated data under the MIT licence; nothing here is
a real record.
"""

import csv
import pathlib
import random

from faker import Faker

ROWS = 3000
LOCALES = ["en_US", "es_MX", "de_DE", "fr_FR", "it_IT", "pt_BR"]
PARTICLES = ["st. surin", "o'neil", "mc donald", "de la cruz", "van der berg", "d'angelo", "al-hassan"]
CHARGES = [
    ("Battery", 0.18), ("Possession of Cannabis", 0.12), ("Grand Theft in the 3rd Degree", 0.08),
    ("Driving While License Revoked", 0.07), ("Petit Theft", 0.06), ("Resist/Obstruct W/O Violence", 0.05),
    ("Felony Driving While Lic Suspd", 0.04), ("Possession of Cocaine", 0.04), ("Burglary Unoccupied Dwelling", 0.03),
]
RARE_CHARGES = [
    "Poss Wep Conv Felon", "Tampering With Physical Evidence", "Aggrav Child Abuse-Agg Battery",
    "Unlaw Use False Name/Identity", "Opert With Susp DL 2nd Offens", "Crim Attempt/Solicit/Consp",
    "Deliver Cannabis 1000FTSch", "Sexual Battery / Vict 12 Yrs +", "Exploit Elderly Person 20-100K",
]


def main():
    rng = random.Random(2026)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(2026 + i)
    out = pathlib.Path(__file__).with_name("people.csv")
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([
            "id", "name", "first", "middle", "last", "LAST_FIRST", "sex", "race", "dob", "age", "case_number",
            "member_id", "charge_degree", "charge_desc", "jail_in", "priors_count", "decile_score", "city",
        ])
        for n in range(ROWS):
            f = fakers[rng.choice(LOCALES)]
            sex = rng.choice(["Male", "Male", "Male", "Female"])
            first = (f.first_name_male() if sex == "Male" else f.first_name_female()).lower()
            last = f.last_name().lower()
            if rng.random() < 0.05:
                last = rng.choice(PARTICLES)
            middle = f.first_name().lower() if rng.random() < 0.3 else ""
            year = rng.randint(1940, 2000)
            month, day = rng.randint(1, 12), rng.randint(1, 28)
            style = rng.random()
            if style < 0.6:
                dob = f"{year}-{month:02d}-{day:02d}"
            elif style < 0.9:
                dob = f"{month:02d}/{day:02d}/{year}"
            else:
                dob = f"{day} {['Jan','Feb','Mar','Apr','May','Jun','Jul','Aug','Sep','Oct','Nov','Dec'][month-1]} {year}"
            case_year = rng.randint(10, 14)
            case_number = f"{case_year:02d}{rng.randint(0, 999999):06d}{rng.choice(['CF', 'MM', 'TC'])}10A"
            if rng.random() < 0.02:
                charge = rng.choice(RARE_CHARGES) + f" {rng.randint(1, 40)}"
            else:
                charge = rng.choices([c for c, _ in CHARGES], [p for _, p in CHARGES])[0]
            w.writerow([
                n + 1,
                f"{first} {last}",
                first,
                middle,
                last,
                f"{last.upper()}, {first.upper()}",
                sex,
                rng.choices(["African-American", "Caucasian", "Hispanic", "Other", "Asian", "Native American"],
                            [0.5, 0.33, 0.09, 0.06, 0.01, 0.01])[0],
                dob,
                2016 - year,
                case_number,
                f"MBR-{rng.randint(0, 9_999_999):07d}",
                rng.choice(["F", "F", "M"]),
                charge,
                f"2013-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00",
                min(int(rng.expovariate(0.3)), 38),
                rng.randint(1, 10),
                f.city(),
            ])


if __name__ == "__main__":
    main()
