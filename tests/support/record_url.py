"""Stand-in for a desktop browser in tests: Python's webbrowser runs $BROWSER with the URL, and this
appends it to a file that the test reads (then opens the URL in the Playwright-driven Chromium)."""

import sys

with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write(sys.argv[2] + "\n")
