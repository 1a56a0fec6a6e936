"""`train-anatomy` names a mask that cannot be used (another size than its image, no lung pixel or
nothing else) in a mask's terms, before it spends its training budget, wherever the seeded split
puts that pair; a stopped run (Ctrl-C, SIGTERM) keeps its steps for the same command to resume; and a
second run into the --out of a live one is refused."""

import json
import os
import signal

import numpy as np
import pytest

from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.reading.images import ReadError
from SSLAnomalyLib.training import lung_training
from SSLAnomalyLib.training.fitting import work_dir
from synthetic_inputs import lung_field, radiograph, write_png

N = 13


@pytest.fixture
def pairs(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    lungs = lung_field(side="right") | lung_field(side="left")
    for i in range(N):
        write_png(images / f"c{i:02d}.png", radiograph(i))
        write_png(masks / f"c{i:02d}.png", lungs.astype(np.uint8) * 255)
    return images, masks


def held_out_mask(masks, seed: int = 0):
    """The mask of a pair the seeded split holds out (measured only after training)."""
    n_held = max(1, round(lung_training.HELD_OUT_FRACTION * N))
    return masks / f"c{np.random.default_rng(seed).permutation(N)[:n_held][0]:02d}.png"


@pytest.mark.parametrize("bad, reason", [(np.ones((30, 40), np.uint8) * 255, "mask is 40x30, its image"),
                                         (np.zeros(radiograph(0).shape, np.uint8), "mask marks no pixel as lung"),
                                         (np.ones(radiograph(0).shape, np.uint8), "mask marks every pixel as lung")])
def test_a_held_out_mask_that_cannot_be_used_is_named_before_training(pairs, tmp_path, monkeypatch, capsys, bad,
                                                                      reason):
    images, masks = pairs
    mask = held_out_mask(masks)
    write_png(mask, bad)

    def trained(*args, **kwargs):
        raise AssertionError("the network was built before every mask was checked")

    monkeypatch.setattr(lung_training, "build_lung_net", trained)
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "lungs"),
           "--minutes", "10", "--size", "64", "--quiet"]
    assert main(run) == 2  # a held-out mask of another size used to fail after the whole --minutes budget;
    # an empty one was refused as 'image is constant: there is nothing to score'
    err = capsys.readouterr().err
    assert str(mask) in err and reason in err and not (tmp_path / "lungs").exists()


def test_a_pair_stored_bottom_up_is_learned_as_shown(tmp_path):
    """A NIfTI/NRRD stored bottom-up (dcm2niix) is detected upright (`Radiograph.shown`); its training
    pair was read as stored, so the network learned upside-down lungs from it."""
    import SimpleITK as sitk

    lungs = (lung_field(side="right") | lung_field(side="left")).astype(np.uint8)
    lungs[: lungs.shape[0] // 2] = 0  # only the lower halves: upside down is not the same mask
    image = radiograph(0)
    stored = []
    for name, pixels in (("image.nrrd", image), ("mask.nrrd", lungs)):
        itk = sitk.GetImageFromArray(np.ascontiguousarray(np.flipud(pixels))[None])
        itk.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))  # rows bottom-up
        sitk.WriteImage(itk, str(tmp_path / name))
        stored.append(tmp_path / name)
    read_image, read_mask = lung_training.load_pair(*stored)
    np.testing.assert_array_equal(read_image, image)
    np.testing.assert_array_equal(read_mask, lungs > 0)


def test_a_mask_is_the_one_at_its_images_path_not_another_patients_of_the_same_name(tmp_path):
    """Matched by file name alone, images/day1/IM1.png and images/day2/IM1.png (two patients) both
    took masks/IM1.png; each now takes the mask at its own path under --masks, and one without is named."""
    lungs = (lung_field(side="right") | lung_field(side="left")).astype(np.uint8) * 255
    for day in ("day1", "day2"):
        (tmp_path / "images" / day).mkdir(parents=True)
        write_png(tmp_path / "images" / day / "IM1.png", radiograph(int(day[-1])))
    (tmp_path / "masks").mkdir()
    write_png(tmp_path / "masks" / "IM1.png", lungs)
    with pytest.raises(ReadError, match="no mask of the same name in .*day1"):
        lung_training.read_pairs(tmp_path / "images", tmp_path / "masks")
    for day in ("day1", "day2"):
        (tmp_path / "masks" / day).mkdir()
        write_png(tmp_path / "masks" / day / "IM1.png", lungs)
    pairs = lung_training.read_pairs(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(ReadError, match="IM1.png: is a file, not a folder"):
        lung_training.read_pairs(tmp_path / "images" / "day1" / "IM1.png", tmp_path / "masks")
    assert [m.relative_to(tmp_path / "masks").as_posix() for _, m in pairs] == ["day1/IM1.png", "day2/IM1.png"]


def test_the_card_of_a_sites_lung_network_names_its_data_not_the_bundled_one(pairs, tmp_path, monkeypatch):
    """The card said '... adult normal radiographs ...', 'OpenIST ... licence unclear' and 'It has seen
    no children' whatever images and masks a site trained on; and it named the folders, and those of its
    command, by their paths on the machine that made it, where every other card names base names."""
    images, masks = pairs
    out = tmp_path / "lungs"
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--minutes", "0.02", "--size", "64", "--quiet"]
    monkeypatch.setattr("sys.argv", ["sslanomaly", *run])  # the command the card records
    assert main(run) == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert " radiographs with lung masks (`images`, masks `masks`)" in card
    assert "`sslanomaly train-anatomy --images images --masks masks --out lungs --minutes 0.02" in card
    assert str(tmp_path) not in card
    assert "OpenIST" not in card and "adult normal" not in card and "seen no children" not in card
    assert "the site's own images and masks, under the site's terms" in card


def lung_checkpoint_step(out) -> int:
    from safetensors import safe_open

    from SSLAnomalyLib.training.lung_checkpoint import CHECKPOINT

    with safe_open(str(work_dir(out) / CHECKPOINT), "pt") as f:
        return json.loads(f.metadata()["state"])["step"]


def stop_lung_training_at(monkeypatch, step: int, stop) -> None:
    """Stop the run as it draws the first example of `step` (steps 0 to step-1 are taken)."""
    draw, calls = lung_training.training_example, []

    def example(*args, **kwargs):
        if len(calls) == step * 16:  # the default batch of 16 examples a step
            stop()
        calls.append(1)
        return draw(*args, **kwargs)

    monkeypatch.setattr(lung_training, "training_example", example)


def test_a_stopped_lung_training_keeps_its_steps_and_resumes_from_them(pairs, tmp_path, monkeypatch, capsys):
    """train-anatomy kept nothing: Ctrl-C or SIGTERM after most of a 12-minute budget lost all of it."""
    images, masks = pairs
    out = tmp_path / "lungs"
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--minutes", "0.05", "--size", "64", "--quiet"]
    stop_lung_training_at(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    unhandled = signal.signal(signal.SIGTERM, lambda *_: pytest.fail("train-anatomy left SIGTERM to kill the process"))
    try:
        assert main(run) == 143
    finally:
        signal.signal(signal.SIGTERM, unhandled)
    # it said 'before its first checkpoint: nothing was kept' (it looked for train's checkpoint file)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (f"terminated (SIGTERM); the run is kept in "
                                                                f"{work_dir(out)}: run the same command again to resume it")
    assert not out.exists() and lung_checkpoint_step(out) == 3

    monkeypatch.undo()
    assert main(run + ["--disease-share", "0.2"]) == 2  # other settings: never resumed
    assert "add --restart" in capsys.readouterr().err and lung_checkpoint_step(out) == 3
    assert main(run) == 0
    assert "from its checkpoint at step 3" in capsys.readouterr().err
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["steps"] > 3 and training["seconds"] >= 3.0
    assert not work_dir(out).exists()  # the run's checkpoint goes once the model is written


def test_a_lung_training_stopped_while_it_is_measured_keeps_every_step(pairs, tmp_path, monkeypatch, capsys):
    """Ctrl-C or SIGTERM once the budget was spent, while the held-out fold was measured or the model
    written, kept only the last minute's checkpoint (with a budget under a minute, nothing): the rerun
    trained those steps again."""
    images, masks = pairs
    out = tmp_path / "lungs"
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--minutes", "0.02", "--size", "64", "--quiet"]

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lung_training, "measure", ctrl_c)
    assert main(run) == 130
    assert "the run is kept in" in capsys.readouterr().err
    steps = lung_checkpoint_step(out)
    monkeypatch.undo()
    assert main(run) == 0 and f"from its checkpoint at step {steps} " in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["training"]["steps"] == steps  # nothing trained again


def test_restart_discards_an_unfinished_lung_training(pairs, tmp_path, monkeypatch, capsys):
    images, masks = pairs
    out = tmp_path / "lungs"
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--minutes", "0.02", "--size", "64", "--quiet"]

    def ctrl_c():
        raise KeyboardInterrupt

    stop_lung_training_at(monkeypatch, 2, ctrl_c)
    assert main(run) == 130
    monkeypatch.undo()
    assert main(run + ["--disease-share", "0.2", "--restart"]) == 0
    assert "resuming" not in capsys.readouterr().err and (out / "manifest.json").exists()


def test_a_second_lung_training_into_the_same_out_is_refused_while_one_trains(pairs, tmp_path, monkeypatch, capsys):
    """Started while another run trained into the same --out, a run trained too and wrote its model,
    and the first then failed after its whole budget ('already holds a model'); now the second is
    refused, naming the live run, and the first writes its model."""
    images, masks = pairs
    out = tmp_path / "lungs"
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--minutes", "0.02", "--size", "64", "--quiet"]
    steps, started, second = lung_training._steps, [], []

    def training(*args):
        if not started:  # the second run starts as the first begins its steps
            started.append(True)
            second.append(main(run))
        return steps(*args)

    monkeypatch.setattr(lung_training, "_steps", training)
    assert main(run) == 0 and second == [2]
    assert f"another sslanomaly run (process {os.getpid()}:" in capsys.readouterr().err
    assert (out / "manifest.json").exists() and not (tmp_path / ".lungs.work.lock").exists()


def test_an_image_given_twice_is_one_image_trained_or_held_out_never_both(pairs, tmp_path, capsys):
    """The same radiograph under two names (a copy, a link) was two pairs: the seeded split could
    train on one and measure the other, flattering the held-out Dice. It is counted once by its pixels,
    as `train` counts a normal, and the copies are named on stderr, in the manifest and on the card."""
    images, masks = pairs
    for i in range(N):
        os.symlink(images / f"c{i:02d}.png", images / f"z{i:02d}.png")
        os.symlink(masks / f"c{i:02d}.png", masks / f"z{i:02d}.png")
    out = tmp_path / "lungs"
    assert main(["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
                 "--minutes", "0.01", "--size", "64", "--quiet"]) == 0
    data = json.loads((out / "manifest.json").read_text())["data"]
    assert data["n_train"] + len(data["held_out"]) == N and all(name.startswith("c") for name in data["held_out"])
    copy = f"{images / 'z04.png'}: the same image as {images / 'c04.png'}, counted once"
    assert copy in data["skipped"] and len(data["skipped"]) == N
    assert f"warning: {copy}; left out of the training images" in capsys.readouterr().err
    assert f"{N} image(s) left out, each named with its reason in the manifest" in (out / "MODEL_CARD.md").read_text()


def test_a_volume_among_the_images_is_left_out_named_as_train_leaves_it(pairs, tmp_path, capsys):
    """A 3-slice NRRD given as an image was trained on through its first slice, unnamed, where train and
    calibrate leave a volume out (and an unreadable image); a volume given as a mask is refused, naming it."""
    import SimpleITK as sitk

    images, masks = pairs
    lungs = (lung_field(side="right") | lung_field(side="left")).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([radiograph(s) for s in (50, 51, 52)]).astype(np.uint8)),
                    str(images / "stack.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(lungs), str(masks / "stack.nrrd"))
    (images / "broken.png").write_bytes(b"not a png")  # unreadable: left out too, as train leaves it
    write_png(masks / "broken.png", lungs * 255)
    out = tmp_path / "lungs"
    run = ["train-anatomy", "--images", str(images), "--masks", str(masks), "--out", str(out),
           "--minutes", "0.01", "--size", "64", "--quiet"]
    assert main(run) == 0
    volume = f"{images / 'stack.nrrd'}: a volume of 3 slices, not one radiograph"
    data = json.loads((out / "manifest.json").read_text())["data"]
    assert data["skipped"][1] == volume and data["n_train"] + len(data["held_out"]) == N
    assert data["skipped"][0].startswith(f"{images / 'broken.png'}: cannot decode")
    assert f"warning: {volume}; left out of the training images" in capsys.readouterr().err

    (images / "stack.nrrd").unlink()
    (images / "broken.png").unlink()
    sitk.WriteImage(sitk.GetImageFromArray(radiograph(13)), str(images / "c13.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([lungs] * 2)), str(masks / "c13.nrrd"))
    assert main(run + ["--overwrite"]) == 2
    assert f"{masks / 'c13.nrrd'}: mask is a volume of 2 slices, its image one radiograph" in capsys.readouterr().err


def test_a_mask_without_its_image_is_named_not_passed_over(pairs):
    """A mask whose image is not at its path under --images (renamed, moved, not copied) was never
    trained on and never named; it is left out with a note naming it, as an unreadable image is."""
    images, masks = pairs
    (masks / "day2").mkdir()
    for stray in (masks / "c99.png", masks / "day2" / "c00.png"):
        write_png(stray, (lung_field(side="right") | lung_field(side="left")).astype(np.uint8) * 255)
    kept, _, _, left_out = lung_training.distinct_pairs(images, masks, 64, progress=False)
    assert len(kept) == N and left_out == [f"{masks / 'c99.png'}: a mask with no image at its path under {images}",
                                           f"{masks / 'day2' / 'c00.png'}: a mask with no image at its path under {images}"]
