"""``python cli.py ...`` is the same as the ``mot-dinov3`` command (works without installing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from mot_dinov3.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
