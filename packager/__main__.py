"""`python -m packager` is `mlpack`."""

import sys

from packager.cli import main

sys.exit(main())
