"""Console pages, one module per area; each defines a `router` that `mount_console` includes."""
