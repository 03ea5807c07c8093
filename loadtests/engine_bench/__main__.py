"""``python -m loadtests.engine_bench``."""

import sys

from loadtests.engine_bench import main

if __name__ == "__main__":
    sys.exit(main())
