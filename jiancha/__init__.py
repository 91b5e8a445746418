"""The ``jiancha`` command line and the embedded local stack (Tansu + redis-server)."""
