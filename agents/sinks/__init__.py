"""Where alerts go: an interface and its implementations."""
