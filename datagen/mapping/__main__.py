"""`python -m datagen.mapping`: see `datagen.mapping.dense_to_778`."""

import sys

from datagen.mapping.dense_to_778 import main

sys.exit(main())
