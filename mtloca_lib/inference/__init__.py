"""Inference stage: what a trained run's models do with images: prediction on files
(``predict``), scoring on another dataset (``external``), Grad-CAM of the classification head
(``gradcam``) and the overlays drawn on images (``overlay``).

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
