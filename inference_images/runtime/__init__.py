"""Fairshare serving runtime: an Open Inference Protocol (KServe v2 REST) server.

Run it with ``python -m inference_images.runtime --help``. The modules split by job:
``protocol`` (OIP request/response shapes), ``gateway`` (headers only Envoy sets), ``models``
(the model contract, loaders and the process's loaded models), ``scheduling`` (where model work
queues), ``server`` (HTTP routes), ``lifecycle`` (start, load, drain, stop) and ``__main__`` (CLI).
"""

__version__ = "0.1.0"
