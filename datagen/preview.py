"""`python -m datagen.preview`: command-line front end of `datagen.inspect.preview`."""

import sys

from datagen.inspect.preview import main

if __name__ == "__main__":
    sys.exit(main())
