"""`python -m datagen.pack`: command-line front end of `datagen.dataset.pack`."""

import sys

from datagen.dataset.pack import main

if __name__ == "__main__":
    sys.exit(main())
