"""The shipped default model: present, loaded by default, and exactly the weights we measured
(a broken, truncated or swapped file changes the probe embedding)."""
import json
from pathlib import Path

import numpy as np

from illusort.embed import embed_images
from illusort.weights import DEFAULT_MODEL, load_model

from conftest import draw_character

PROBE = Path(__file__).with_name("shipped_model_probe.json")


def probe_images():
    return [draw_character(0, 0, size=(120, 160)), draw_character(3, 7, size=(200, 150))]


def test_default_model_is_the_shipped_one_and_unchanged():
    model = load_model(None)
    assert model.model_id.startswith(DEFAULT_MODEL + ":") and model.card["trained"]
    assert model.threshold is not None and 0 < model.threshold < 1
    stored = json.loads(PROBE.read_text())
    assert model.model_id == stored["model_id"]
    vectors = embed_images(model, probe_images())
    np.testing.assert_allclose(vectors, np.asarray(stored["vectors"], np.float32), atol=2e-3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


if __name__ == "__main__":  # regenerate after shipping a new model: python tests/test_shipped_model.py
    model = load_model(None)
    PROBE.write_text(json.dumps({"model_id": model.model_id,
                                 "vectors": embed_images(model, probe_images()).round(5).tolist()}) + "\n")
    print(f"wrote {PROBE}")
