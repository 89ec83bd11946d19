"""``python -m mot_dinov3`` runs the CLI."""

import sys

from mot_dinov3.cli import main

sys.exit(main())
