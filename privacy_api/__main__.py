"""`python -m privacy_api`: the `privacy-api` command, for where the script is not on the path."""

import sys

from privacy_api.cli import main

sys.exit(main())
