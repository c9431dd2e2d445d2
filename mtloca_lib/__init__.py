"""mtloca: a reproducible companion to MTL-OCA (Lu et al., Front. Oncol. 2025).

Multi-task segmentation and classification of breast ultrasound images with
object contextual attention. See the README for the map from the paper's
tables and figures to notebooks, and the list of interpretations.
"""

__version__ = "0.1.0"
