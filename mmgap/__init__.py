"""mmgap: sample-level modality imbalance (modality gap, mixture posteriors, adaptive loss)."""

__version__ = "0.1.0"
