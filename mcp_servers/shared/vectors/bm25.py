"""Deterministic text -> BM25 sparse vectors, shared by every adapter so lexical scores match across engines.

Documents carry saturated term frequencies; queries carry 1.0 per unique token. The engine multiplies by IDF
(sparse vector `Modifier.IDF`), so the dot product is the classic BM25 score. Token ids are 31-bit BLAKE2b
hashes: stable across processes and Python versions (unlike the salted built-in `hash()`).
"""

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator

from mcp_servers.shared.vectors.port import SparseVector

K1 = 1.2
B = 0.75
DEFAULT_AVG_LEN = 256.0
MAX_TOKEN_CHARS = 64

# Runs of letters, digits and underscores in any script; everything else separates words.
_WORD = re.compile(r"\w+")

# Short on purpose: IDF already discounts common words, and a long list would drop words that name things in
# code ("not", "for", "all", "new"). Only function words that carry no meaning in a query are here.
_STOP_WORDS_TEXT = """
    a about an and are as at be been being but by can could did do does doing had has have having he her
    hers him his how i if in into is it its itself just me more most my no nor of off on once only or other
    our ours out over own same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def token_id(token: str) -> int:
    """Stable 31-bit id of a token (BLAKE2b of its UTF-8 bytes), a valid non-negative sparse index."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF


def _split_case(part: str) -> list[str]:
    """Split camelCase / PascalCase / HTTPServer-style acronyms at case changes (any script with case)."""
    pieces: list[str] = []
    start = 0
    for index in range(1, len(part)):
        previous, current = part[index - 1], part[index]
        following = part[index + 1] if index + 1 < len(part) else ""
        lower_to_upper = (previous.islower() or previous.isdigit()) and current.isupper()
        # "HTTPServer": the boundary sits before the "S" that starts a capitalised word.
        acronym_end = previous.isupper() and current.isupper() and following.islower()
        if lower_to_upper or acronym_end:
            pieces.append(part[start:index])
            start = index
    pieces.append(part[start:])
    return pieces


def _light_stem(token: str) -> str:
    """Harman's S-stemmer on plain ASCII words: "queries"->"query", "indexes"->"indexe", "documents"->"document"."""
    if not (token.isascii() and token.isalpha()) or len(token) <= 3:
        return token
    if token.endswith("ies") and not token.endswith(("eies", "aies")):
        return token[:-3] + "y"
    if token.endswith("es") and not token.endswith(("aes", "ees", "oes")):
        return token[:-1]
    if token.endswith("s") and not token.endswith(("us", "ss")):
        return token[:-1]
    return token


def _keep(token: str) -> bool:
    if len(token) > MAX_TOKEN_CHARS or token in STOP_WORDS:
        return False
    # Single letters are noise ("s" from "user's"); single digits still carry meaning ("python 3").
    return len(token) > 1 or token.isdigit()


def _word_tokens(word: str) -> Iterator[str]:
    """The whole identifier (if compound) followed by its snake_case and camelCase parts, all case-folded."""
    stripped = word.strip("_")
    if not stripped:
        return
    parts = [piece for chunk in stripped.split("_") if chunk for piece in _split_case(chunk)]
    whole = stripped.casefold()
    if len(parts) > 1 and _keep(whole):
        # The exact identifier is the rarest and most telling token a code query can contain.
        yield whole
    for part in parts:
        token = _light_stem(part.casefold())
        if _keep(token):
            yield token


def tokenize(text: str) -> list[str]:
    """Case-folded word tokens of `text` in order, with compound identifiers also split into their parts."""
    normalized = unicodedata.normalize("NFKC", text)
    return [token for word in _WORD.findall(normalized) for token in _word_tokens(word)]


def document_vector(text: str, *, avg_len: float = DEFAULT_AVG_LEN, k1: float = K1, b: float = B) -> SparseVector:
    """BM25 document weights: tf*(k1+1) / (tf + k1*(1 - b + b*len/avg_len)) per token, indices ascending.

    Args:
        avg_len: expected average document length in tokens; keep it fixed for a collection, since changing
            it changes every stored weight.
    """
    if avg_len <= 0:
        raise ValueError("avg_len must be positive")
    tokens = tokenize(text)
    if not tokens:
        return SparseVector(indices=(), values=())
    length_norm = k1 * (1.0 - b + b * len(tokens) / avg_len)
    weights: dict[int, float] = {}
    for token, tf in Counter(tokens).items():
        # Distinct tokens may share a hash (rarely, 31 bits): their weights add, as one merged term would.
        index = token_id(token)
        weights[index] = weights.get(index, 0.0) + tf * (k1 + 1.0) / (tf + length_norm)
    ordered = sorted(weights.items())
    return SparseVector(indices=tuple(i for i, _ in ordered), values=tuple(v for _, v in ordered))


def query_vector(text: str) -> SparseVector:
    """BM25 query weights: 1.0 for each unique token, indices ascending (IDF comes from the engine)."""
    indices = sorted({token_id(token) for token in tokenize(text)})
    return SparseVector(indices=tuple(indices), values=(1.0,) * len(indices))
