"""Twin Machine Unlearning (TMU): unlearn so that the model matches the gold model."""

__version__ = "0.1.0"
