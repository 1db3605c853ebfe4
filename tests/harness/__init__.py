"""What the suite runs its tests on: a Redis server (redis.py), the worker and Daphne
processes (processes.py) and the tiny models (models.py, tinymodel.py). The fixtures that
use them live in tests/conftest.py and tests/sites.py."""

# The named writers' password (tests/conftest.py's alice and bob).
PASSWORD = "a long test passphrase"
