"""CLI subcommands; one module per subcommand, each exposing ``register(app)``."""
