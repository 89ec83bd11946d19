"""Adapters that plug this package's embedders into other trackers.

* :mod:`mot_dinov3.integrations.ultralytics`: Ultralytics BoT-SORT ReID (``register()``, ``DINOv2ReID``).
"""
