"""`python -m datagen.contact_sheet`: command-line front end of `datagen.inspect.contact_sheet`."""

import sys

from datagen.inspect.contact_sheet import main

if __name__ == "__main__":
    sys.exit(main())
