"""TensorFlow Serving: its config files, the pinned runtime version, and the op check."""
