"""Developer tools, outside the runtime path: the demo, the benchmark, the connector scaffold and a
server of every sandbox.

Nothing in ``core``, ``actors`` or a connector imports this package; the CLI reaches it only from its
developer commands.
"""
