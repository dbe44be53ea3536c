"""Editing model texts and checking that a broken one is refused: shared by the modules
that test the model file's versions."""

from __future__ import annotations

import json

import pytest

import gmmcli
from gmmcli.io.modelfile import ModelFileError


def edited(text, edit):
    """The model text with ``edit`` applied to its parsed JSON."""
    document = json.loads(text)
    edit(document)
    return json.dumps(document, sort_keys=True, indent=2)


def assert_rejected(tmp_path, content, match):
    """Both load(path) and loads(text) refuse ``content``, naming the problem (and file)."""
    path = tmp_path / "model.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ModelFileError, match=match) as err:
        gmmcli.load(str(path))
    assert str(path) in str(err.value)
    with pytest.raises(ModelFileError, match=match):
        gmmcli.loads(content)
