"""Built-in backends (one module each), registered through the `tunegate.backends` entry point group."""
