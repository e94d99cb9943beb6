"""`mailspec fuzz`: a seeded stateful mutator (cases.py) whose cases run as
scenarios through the engine (runner.py); see docs/fuzz.md."""
