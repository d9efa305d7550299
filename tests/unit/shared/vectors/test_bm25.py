"""BM25 sparse encoding: tokenisation, stable ids, saturated term frequencies, query weights."""

import math
import subprocess
import sys

import pytest

from mcp_servers.shared.vectors.bm25 import (
    STOP_WORDS,
    document_vector,
    query_vector,
    token_id,
    tokenize,
)


def _weights(text: str, **kwargs: float) -> dict[int, float]:
    vector = document_vector(text, **kwargs)
    return dict(zip(vector.indices, vector.values, strict=True))


def test_tokenize_lowercases_and_drops_stop_words_and_punctuation() -> None:
    assert tokenize("The Quick, brown FOX -- and the dog!") == ["quick", "brown", "fox", "dog"]


def test_tokenize_keeps_snake_case_identifier_and_its_parts() -> None:
    assert tokenize("parse_http_request") == ["parse_http_request", "parse", "http", "request"]


def test_tokenize_splits_camel_case_and_acronyms() -> None:
    assert tokenize("parseHTTPRequest") == ["parsehttprequest", "parse", "http", "request"]
    assert tokenize("XMLHttpRequest") == ["xmlhttprequest", "xml", "http", "request"]


def test_tokenize_strips_dunder_underscores() -> None:
    assert tokenize("__init__") == ["init"]


def test_tokenize_is_unicode_aware() -> None:
    assert tokenize("Ärger naïve CAFÉ straße") == ["ärger", "naïve", "café", "strasse"]
    assert tokenize("日本語 テキスト") == ["日本語", "テキスト"]


def test_tokenize_normalises_compatibility_characters() -> None:
    # NFKC: the "fi" ligature and full-width letters read as plain ASCII.
    assert tokenize("\ufb01le \uff21\uff22\uff23") == ["file", "abc"]


def test_tokenize_applies_light_plural_stemming_to_words_not_whole_identifiers() -> None:
    assert tokenize("documents queries status class") == ["document", "query", "status", "class"]
    assert tokenize("list_documents") == ["list_documents", "list", "document"]


def test_tokenize_drops_single_letters_but_keeps_digits() -> None:
    assert tokenize("user's python 3 x") == ["user", "python", "3"]


def test_tokenize_drops_overlong_tokens() -> None:
    assert tokenize("a" * 65 + " keep") == ["keep"]


def test_stop_words_do_not_include_code_words() -> None:
    assert STOP_WORDS.isdisjoint({"not", "for", "all", "new", "return", "import"})


def test_token_id_is_31_bit_and_stable_across_processes() -> None:
    code = "from mcp_servers.shared.vectors.bm25 import token_id; print(token_id('parse_http_request'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert int(other.stdout) == token_id("parse_http_request")
    assert 0 <= token_id("parse_http_request") < 2**31
    assert token_id("a") != token_id("b")


def test_document_vector_uses_bm25_saturation_with_default_parameters() -> None:
    # 3 tokens: "alpha" twice, "beta" once; k1=1.2, b=0.75, avg_len=256.
    weights = _weights("alpha beta alpha")
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 256)
    assert math.isclose(weights[token_id("alpha")], 2 * 2.2 / (2 + norm))
    assert math.isclose(weights[token_id("beta")], 1 * 2.2 / (1 + norm))


def test_document_vector_honours_avg_len() -> None:
    short_avg = _weights("alpha beta", avg_len=1.0)[token_id("alpha")]
    long_avg = _weights("alpha beta", avg_len=1000.0)[token_id("alpha")]
    # Longer-than-average documents are penalised.
    assert short_avg < long_avg


def test_document_vector_term_frequency_saturates() -> None:
    once = _weights("alpha " + "filler " * 20)[token_id("alpha")]
    ten = _weights("alpha " * 10 + "filler " * 11)[token_id("alpha")]
    hundred = _weights("alpha " * 100 + "filler " * 11)[token_id("alpha")]
    assert once < ten < hundred < 2.2


def test_document_vector_indices_are_sorted_and_unique() -> None:
    vector = document_vector("zeta alpha mu alpha beta gamma delta")
    assert list(vector.indices) == sorted(set(vector.indices))
    assert len(vector.indices) == len(vector.values)


def test_document_vector_is_deterministic() -> None:
    assert document_vector("Some text with parse_http_request") == document_vector("Some text with parse_http_request")


def test_document_vector_rejects_non_positive_avg_len() -> None:
    with pytest.raises(ValueError):
        document_vector("alpha", avg_len=0)


def test_empty_or_stop_word_text_gives_empty_vectors() -> None:
    for text in ("", "   ", "the and of", "!!!"):
        assert document_vector(text).indices == ()
        assert query_vector(text).indices == ()


def test_query_vector_gives_weight_one_per_unique_token() -> None:
    vector = query_vector("alpha alpha beta")
    assert vector.values == (1.0, 1.0)
    assert set(vector.indices) == {token_id("alpha"), token_id("beta")}


def test_query_and_document_share_token_ids() -> None:
    document = document_vector("def parse_http_request(raw): ...")
    query = query_vector("parse_http_request")
    assert set(query.indices) <= set(document.indices)
