"""singer-ssl: self-supervised singer-identity embeddings, from audio folders to metrics.

The library is importable without DVC. ``load_model`` is the public entry point for users who
want a trained encoder in their own code.
"""

__version__ = "0.1.0"


def load_model(path, input_sr=None, device=None, torchscript=False):  # noqa: D103 - re-exported
    from singer_ssl.api import load_model as _load_model

    return _load_model(path, input_sr=input_sr, device=device, torchscript=torchscript)


load_model.__doc__ = "See :func:`singer_ssl.api.load_model`."
