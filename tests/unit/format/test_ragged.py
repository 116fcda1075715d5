"""pydata.Ragged: the container of a batch of variable-shape rows (numpy and torch)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from pydata import Ragged


def rows() -> list[np.ndarray]:
    return [np.arange(3, dtype=np.int32), np.zeros(0, np.int32), np.arange(10, 15, dtype=np.int32)]


def test_rows_round_trip() -> None:
    r = Ragged.from_rows(rows())
    assert len(r) == 3
    assert r.offsets.tolist() == [0, 3, 3, 8]
    assert r.shapes.tolist() == [[3], [0], [5]]
    assert r.lengths().tolist() == [3, 0, 5]
    for got, want in zip(r, rows()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(r[-1], rows()[2])
    assert r.nbytes == 8 * 4
    with pytest.raises(IndexError, match="row 3 is out of range for 3 rows"):
        r[3]


def test_rows_of_two_dimensions_keep_their_shapes() -> None:
    parts = [np.arange(6).reshape(2, 3), np.arange(4).reshape(4, 1)]
    r = Ragged.from_rows(parts)
    assert [x.shape for x in r.tolist()] == [(2, 3), (4, 1)]
    np.testing.assert_array_equal(r[0], parts[0])
    with pytest.raises(ValueError, match="needs 1-D rows"):
        r.padded()


def test_bad_input_is_explained() -> None:
    with pytest.raises(ValueError, match="one ndim, got \\[1, 2\\]"):
        Ragged.from_rows([np.zeros(2), np.zeros((1, 1))])
    with pytest.raises(ValueError, match="needs dtype and ndim"):
        Ragged.from_rows([])
    with pytest.raises(ValueError, match="hold 5 elements, values has 4"):
        Ragged.from_values(np.zeros(4), [[2], [3]])
    empty = Ragged.from_rows([], dtype=np.int32, ndim=1)
    assert len(empty) == 0 and empty.values.dtype == np.int32 and empty.shapes.shape == (0, 1)


def test_padded_numpy_and_torch_agree() -> None:
    r = Ragged.from_rows(rows())
    padded = r.padded(-1)
    assert padded.tolist() == [[0, 1, 2, -1, -1], [-1] * 5, [10, 11, 12, 13, 14]]
    t = r.map(torch.from_numpy)
    assert isinstance(t.values, torch.Tensor) and isinstance(t[2], torch.Tensor)
    assert torch.equal(t.padded(-1), torch.from_numpy(padded))


def test_torch_form_moves_and_pickles() -> None:
    t = Ragged.from_rows(rows()).map(torch.from_numpy)
    moved = t.to(torch.float64)
    assert moved.values.dtype == torch.float64 and moved.shapes is t.shapes
    back = pickle.loads(pickle.dumps(t))
    assert all(torch.equal(a, b) for a, b in zip(back, t))
    assert "rows=3" in repr(t) and "Tensor" in repr(t)
