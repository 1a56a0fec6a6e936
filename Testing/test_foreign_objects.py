"""Foreign objects for training are drawn as named (radiopaque: only brighter, never darker), are
seeded, and leave the acquisition augmentation's random stream alone when switched off; a run that
trains with them is judged by a checkpoint check whose shifted normals carry them too."""

import numpy as np
from PIL import Image

from conftest import data_dir
from SSLAnomalyLib.training.foreign_objects import draw_foreign_objects
from SSLAnomalyLib.training.trainer import augment


def normal_image(side=128):
    f = sorted(data_dir("kermany", "train", "normal").iterdir())[0]
    return np.asarray(Image.open(f).convert("L").resize((side, side)), np.float32) / 255


def test_objects_only_brighten_a_small_part_of_the_radiograph_and_are_seeded():
    image = normal_image()
    drawn = [draw_foreign_objects(image, np.random.default_rng(seed)) for seed in range(20)]
    for out in drawn:
        changed = out != image
        assert out.dtype == np.float32 and (out >= image).all()
        assert 0 < changed.mean() < 0.1 and out[changed].min() >= 0.3  # objects, not a veil over the image
    assert np.array_equal(drawn[3], draw_foreign_objects(image, np.random.default_rng(3)))
    assert not np.array_equal(drawn[3], drawn[4])


def test_augment_draws_objects_at_the_stated_share_and_is_unchanged_without_them(monkeypatch):
    from SSLAnomalyLib.training import trainer

    image = normal_image()
    plain = augment(image, np.random.default_rng(5))
    assert np.array_equal(plain, augment(image, np.random.default_rng(5), objects=0.0))
    drawn = []
    monkeypatch.setattr(trainer, "draw_foreign_objects", lambda x, rng: drawn.append(1) or draw_foreign_objects(x, rng))
    rng = np.random.default_rng(6)
    views = [augment(image, rng, objects=0.5) for _ in range(200)]
    assert 80 <= len(drawn) <= 120 and all(v.shape == image.shape for v in views)


def test_the_checkpoint_check_of_a_run_with_objects_sees_normals_carrying_them(monkeypatch, small_normals):
    from SSLAnomalyLib.core.model.encoder import EncoderConfig
    from SSLAnomalyLib.training import trainer
    from SSLAnomalyLib.training.fitting import load_normals
    from SSLAnomalyLib.training.selection import SyntheticCheck

    normals = load_normals(small_normals[0], 128, progress=False)
    train, held = normals.subset(range(20)), normals.subset(range(20, 40))
    drawn = []
    monkeypatch.setattr(trainer, "draw_foreign_objects", lambda x, rng: drawn.append(1) or draw_foreign_objects(x, rng))
    plain = SyntheticCheck(EncoderConfig(), train, held, seed=0, device="cpu")
    assert not drawn  # a run without objects keeps the check it always had
    with_objects = SyntheticCheck(EncoderConfig(), train, held, seed=0, device="cpu", objects=1.0)
    assert len(drawn) == 20  # every shifted normal of this check carries objects
    assert np.array_equal(with_objects.normals[:20], plain.normals[:20]) and np.array_equal(plain.normals[:20], held.images01)
    assert not np.array_equal(with_objects.normals[20:], plain.normals[20:])
