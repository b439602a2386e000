"""Where a PatchCore bank entry came from: image and patch position from the coreset's indices."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.provenance import provenance_of


def test_store_indices_map_to_image_row_and_column_row_major():
    prov = provenance_of(np.array([0, 5, 17, 31]), (4, 4), ["a.png", "b.png"])
    assert prov.entries.tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 3, 3]]
    assert prov.entries.dtype == np.int32 and prov.entries.nbytes == 4 * 12  # 12 bytes an entry
    assert len(prov) == 4


def test_an_index_beyond_the_training_images_is_refused():
    with pytest.raises(ValueError, match="grid or the path list is wrong"):
        provenance_of(np.array([32]), (4, 4), ["a.png", "b.png"])
