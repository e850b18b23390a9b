"""shadowroute: a Kubernetes operator that shadows, canaries and promotes new versions
of a service, gated by Prometheus."""

__version__ = "0.1.0"
