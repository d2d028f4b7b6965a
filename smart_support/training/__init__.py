"""Dataset loading, fine-tuning and evaluation reports. Serving never imports this package."""
