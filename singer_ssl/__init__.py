"""singer-ssl: self-supervised singer-identity embeddings, from audio folders to metrics.

The library is importable without DVC, and ``import singer_ssl`` stays light (torch is imported on
first use). ``load_model`` (-> :class:`singer_ssl.api.SingerEncoder`: ``embed_file``, ``embed_files``,
``embed``, ``embedding_dim``, ``sample_rate``) and ``embed_files`` are the public entry points for
users who want a trained encoder in their own code (see :mod:`singer_ssl.api`).
"""

__version__ = "0.1.0"
__all__ = ["__version__", "embed_files", "load_model"]


def load_model(path, input_sr=None, device=None, torchscript=False, batch_size=32):  # noqa: D103 - re-exported
    from singer_ssl.api import load_model as _load_model

    return _load_model(path, input_sr=input_sr, device=device, torchscript=torchscript, batch_size=batch_size)


def embed_files(files, model_dir, device=None, batch_size=32):  # noqa: D103 - re-exported
    from singer_ssl.api import embed_files as _embed_files

    return _embed_files(files, model_dir, device=device, batch_size=batch_size)


load_model.__doc__ = "See :func:`singer_ssl.api.load_model` (returns a :class:`singer_ssl.api.SingerEncoder`)."
embed_files.__doc__ = "See :func:`singer_ssl.api.embed_files`: yields ``(path, numpy (D,))`` per file."
