"""`python -m datagen.poses`: see `datagen.poses.construction`."""

import sys

from datagen.poses.construction import main

sys.exit(main())
