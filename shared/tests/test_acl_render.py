"""The ACL file's text, without Redis (tests/test_acl.py loads it into the real one)."""

from __future__ import annotations

import hashlib

import pytest

from alphasaga_shared import acl


def test_a_namespace_with_glob_characters_matches_only_itself() -> None:
    text = acl.render("a*b?[c]")
    assert "~a\\*b\\?\\[c\\]:cmd:ml " in text
    assert "~a*b" not in text


def test_passwords_are_kept_as_their_hashes_and_a_user_without_one_is_off() -> None:
    text = acl.render("ns", {"ml": "s3cret"})
    lines = {line.split()[1]: line for line in text.splitlines()}
    assert lines["default"] == "user default off"
    assert lines["alphasaga-ml"].startswith(f"user alphasaga-ml on #{hashlib.sha256(b's3cret').hexdigest()} ")
    assert "s3cret" not in text
    assert lines["alphasaga-codegen"].startswith("user alphasaga-codegen off resetpass ")
    assert lines["alphasaga-admin"].endswith(" ~* &* +@all")
    assert [n for n, line in lines.items() if "+@all" in line] == ["alphasaga-admin"]


def test_a_password_for_no_user_is_refused() -> None:
    with pytest.raises(ValueError, match="passwords for no such user: mll"):
        acl.render("ns", {"mll": "x"})
