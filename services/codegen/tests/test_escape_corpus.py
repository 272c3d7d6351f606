"""Layer 1 on the escape corpus (``escape_corpus.py``): the checker refuses every snippet.

``test_escape_sandboxes.py`` runs the same snippets with the checker off, one run each,
in each sandbox; ``test_escape_chains.py`` runs whole strategies built on them.
"""

from __future__ import annotations

import pytest

from alphasaga_codegen.domain import RuleViolation, validate_strategy
from services.codegen.tests.escape_corpus import CORPUS, strategy_module


def test_the_corpus_covers_every_category_of_both_issues() -> None:
    assert len(CORPUS) >= 50
    assert len({case for case, _, _ in CORPUS}) == len(CORPUS)
    categories = {category for _, category, _ in CORPUS}
    assert {
        # issue #18
        "reproduction", "library internals", "type walk", "decorator", "f-string", "__import__ alias",
        "numpy ctypes", "pickle", "os.environ", "huge allocation", "fork bomb", "infinite loop",
        # issue #24
        "name dispatch", "look-ahead", "runner", "disk fill", "host files", "state between runs",
    } <= categories  # fmt: skip


@pytest.mark.parametrize(("case", "body"), [(case, body) for case, _, body in CORPUS], ids=[c for c, _, _ in CORPUS])
def test_the_checker_refuses(case: str, body: str) -> None:
    with pytest.raises(RuleViolation):
        validate_strategy(strategy_module(body))
