"""Testing tools shipped as product: the broker conformance suite and helpers."""
