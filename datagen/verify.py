"""`python -m datagen.verify`: command-line front end of `datagen.dataset.verify`."""

import sys

from datagen.dataset.verify import main

if __name__ == "__main__":
    sys.exit(main())
