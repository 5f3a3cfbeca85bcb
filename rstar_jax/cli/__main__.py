"""``python -m rstar_jax.cli``: the ``rstar-jax`` command."""

import sys

from rstar_jax.cli.main import main

sys.exit(main())
