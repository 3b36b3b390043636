"""alaz: an eBPF node agent that sees every request between services on a node."""

__version__ = "0.1.0"
