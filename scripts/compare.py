"""Compare runs under a folder: `python scripts/compare.py [outputs] [--sort test/accuracy] [--tag t] [--name n] [--sweep s]`.

Prints the table and writes comparison.csv and comparison.html (table and plots); no tracking service needed.
A run folder whose files cannot be read is listed as unreadable, with the reason, and the others are compared.
"""

import sys

from transferlab.commands import compare

if __name__ == "__main__":
    sys.exit(compare.main(description=__doc__.splitlines()[0]))
