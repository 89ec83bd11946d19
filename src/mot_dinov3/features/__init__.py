"""Pluggable appearance-embedding backends: ``dino`` (DINOv3/DINOv2), ``onnx`` (any ReID model), ``yolo``
(detector neck features). Build one with :func:`mot_dinov3.features.factory.create_embedder`."""
