"""`python -m ewi.bench` (`make bench`)."""

import sys

from ewi.bench import main

sys.exit(main())
