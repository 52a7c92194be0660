"""protocolcheck: recommend and validate imaging protocols for lumbosacral plexopathy.

Data flows one way: files -> headers -> series -> classification -> protocol match -> findings -> report.
"""

__version__ = "0.1.0"
