"""`python -m datagen.render`: see `datagen.render.driver`."""

import sys

from datagen.render.driver import main

sys.exit(main())
