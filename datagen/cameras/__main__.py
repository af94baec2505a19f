"""`python -m datagen.cameras`: see `datagen.cameras.hemisphere`."""

import sys

from datagen.cameras.hemisphere import main

sys.exit(main())
