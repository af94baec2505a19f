"""`python -m datagen.mano`: command-line front end of `datagen.mapping.mano`."""

import sys

from datagen.mapping.mano import main

if __name__ == "__main__":
    sys.exit(main())
