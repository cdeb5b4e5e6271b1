"""Tags: cost attribution by feature, customer or experiment. A request's tags are those of its
`x-thriftgate-tags` header (comma-separated) and its key's default tags; every ledger row keeps them.
The header is checked: a bounded number of short, plain tags, or a 400 that names it."""

import re

import orjson

from proxy.control.config import TAG_PATTERN
from proxy.errors import BadRequest

TAGS_HEADER = "x-thriftgate-tags"
MAX_TAGS = 16  # per header; a key adds at most as many again
_TAG = re.compile(TAG_PATTERN)


def parse_tags(header: str | None) -> frozenset[str]:
    if not header:
        return frozenset()
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"The {TAGS_HEADER} header has {len(tags)} tags; at most {MAX_TAGS} are allowed.",
                         param=TAGS_HEADER, code="invalid_tags")
    for tag in tags:
        if not _TAG.match(tag):
            raise BadRequest(f"The {TAGS_HEADER} header has an invalid tag {tag[:80]!r}: a tag is 1-64 letters, digits "
                             "or . _ : / = -, starting with a letter or digit; tags are separated by commas.",
                             param=TAGS_HEADER, code="invalid_tags")
    return frozenset(tags)


def tags_column(tags: frozenset[str]) -> str | None:
    """The ledger's `tags` column: a JSON array, sorted, or NULL."""
    return orjson.dumps(sorted(tags)).decode() if tags else None
