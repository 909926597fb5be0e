"""The benchmark behind ``make bench``: the server measured through its public interfaces (HTTPS, the command
line, the virtual card's APDU counters), each figure a ratio against a floor measured in the same run.
``bench/run.py`` is the entry point and writes docs/benchmarks.md."""
