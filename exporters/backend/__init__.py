"""Python-backend model code that the exporter copies into a repository.

Each file here becomes ``<model>/1/model.py``. They are self-contained: they
import only numpy, the Triton Python-backend utilities and their own runtime
(tokenizers, onnxruntime), and read everything else from their own
``config.pbtxt``, so a repository runs in any tritonserver with the Python
backend, not only next to this package.
"""
