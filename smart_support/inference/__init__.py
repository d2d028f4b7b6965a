"""Model artifacts and prediction: no Flask here, and nothing from training."""
