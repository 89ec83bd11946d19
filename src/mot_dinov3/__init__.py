"""mot-dinov3: YOLO detection, budget-aware appearance-embedding scheduling and an IoU + cosine tracker."""

__version__ = "0.1.0"
