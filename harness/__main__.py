"""`python -m harness …` = `bench …`: runs from a checkout (PYTHONPATH=<checkout>) in an environment that was
not built from the lock — a cluster's PyTorch module, a container image — with no `pip install` of this
package and so no `bench` script."""

import sys

from harness.cli import main

# Spawned case processes import this module as __mp_main__; only the command itself runs main().
if __name__ == "__main__":
    sys.exit(main())
