"""tritonize: fine-tuned encoder checkpoints served as Triton ensembles.

The base install is the client SDK (``tritonize.client``). Exporting, serving
and load testing live behind the ``export``, ``serve`` and ``loadtest`` extras.
"""

__version__ = "0.1.0"
