"""Labels in the shards: identities and attributes beside the pixels, read back; old shards still read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dcgan_cli.data import shards
from dcgan_cli.errors import DcganError
from dcgan_cli.data.pipeline import labelled_batches, make_dataset
from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Smiling"]


def read(data_dir, labels):
    images, values = [], {k: [] for k in labels}
    for img, lab in labelled_batches(data_dir, 4, labels):
        images.append(img)
        for k in labels:
            values[k].append(lab[k])
    return np.concatenate(images), {k: np.concatenate(v) for k, v in values.items()}


def test_labelled_example_bytes_are_a_real_tf_example():
    import tensorflow as tf

    pixels = bytes(range(48))
    record = shards.serialize_example(pixels, {"identity": 2880, "attributes": [1, 0, 1], "neg": -3})
    ex = tf.train.Example.FromString(record)
    f = ex.features.feature
    assert f["image"].bytes_list.value == [pixels]
    assert list(f["identity"].int64_list.value) == [2880]
    assert list(f["attributes"].int64_list.value) == [1, 0, 1]
    assert list(f["neg"].int64_list.value) == [-3]
    # Without labels: the same bytes the workers write.
    assert shards.serialize_example(pixels) == shards.example_prefix(48) + pixels


def test_old_shards_read_missing_labels_and_new_shards_read_as_images(tmp_path):
    import tensorflow as tf

    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    old, new = shards.serialize_example(img.tobytes()), shards.serialize_example(img.tobytes(), {"identity": 7})
    pix, lab = shards.parse_labelled(tf.constant([old, new]), 16, 3, {"identity": 1, "attributes": 2})
    assert lab["identity"].numpy().tolist() == [-1, 7]
    assert lab["attributes"].numpy().tolist() == [[-1, -1], [-1, -1]]
    np.testing.assert_array_equal(pix.numpy()[1], img)
    np.testing.assert_array_equal(shards.parse_images(tf.constant([new]), 16, 3).numpy()[0], img)


def celeba_tree(root, n=6, identities=(5, 5, 9, 9, 9, 12), attr_file=True):
    img_dir = root / "celeba" / "img_align_celeba"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(img_dir / f"{i + 1:06d}.jpg")
    (root / "celeba" / "identity_CelebA.txt").write_text(
        "".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(identities)))
    if attr_file:
        rows = "".join(f"{i + 1:06d}.jpg  {' '.join('1' if (i + j) % 2 else '-1' for j in range(3))}\n"
                       for i in range(n))
        (root / "celeba" / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(ATTRS)}\n{rows}")
    return img_dir


def test_preprocess_celeba_stores_identities_and_attributes(tmp_path):
    img_dir = celeba_tree(tmp_path)
    out = tmp_path / "out"
    m = preprocess(PreprocessConfig(source=str(img_dir), out=str(out), size=16, crop="celeba", workers=1))
    specs = shards.label_specs(m)
    assert specs["identity"]["source"] == "identity_CelebA.txt" and specs["identity"]["identities"] == 3
    assert specs["attributes"]["names"] == ATTRS and specs["attributes"]["length"] == 3
    assert json.loads((out / "manifest.json").read_text())["labels"] == m["labels"]
    images, labels = read(out, ("identity", "attributes"))
    assert labels["identity"].tolist() == [5, 5, 9, 9, 9, 12]
    assert labels["attributes"].tolist() == [[(i + j) % 2 for j in range(3)] for i in range(6)]
    # The pixels are what an unlabelled run stores, and the GAN pipeline reads them unchanged.
    plain = tmp_path / "plain"
    preprocess(PreprocessConfig(source=str(img_dir), out=str(plain), size=16, crop="celeba", workers=1, labels="none"))
    assert "labels" not in shards.load_manifest(plain)
    np.testing.assert_array_equal(read(plain, ())[0], images)
    ds = make_dataset(out, 6, shuffle=False, repeat=False)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), images)
    # Old (unlabelled) data asked for identities: one line naming the fix.
    with pytest.raises(DcganError, match="no identity labels.*--labels celeba"):
        read(plain, ("identity",))


def test_changed_annotations_are_a_different_output(tmp_path):
    img_dir = celeba_tree(tmp_path, attr_file=False)
    out = tmp_path / "out"
    cfg = PreprocessConfig(source=str(img_dir), out=str(out), size=16, crop="celeba", workers=1)
    preprocess(cfg)
    assert preprocess(cfg).get("up_to_date")
    (tmp_path / "celeba" / "identity_CelebA.txt").write_text("".join(f"{i + 1:06d}.jpg 1\n" for i in range(5)))
    with pytest.raises(DcganError, match="--force"):
        preprocess(cfg)
    m = preprocess(PreprocessConfig(**{**cfg.__dict__, "force": True}))
    assert shards.label_specs(m)["identity"]["missing"] == 1  # 000006.jpg has no line now
    assert read(out, ("identity",))[1]["identity"].tolist() == [1, 1, 1, 1, 1, -1]


def test_bad_annotation_file_is_one_line_naming_the_fix(tmp_path):
    img_dir = celeba_tree(tmp_path)
    (tmp_path / "celeba" / "identity_CelebA.txt").write_text("000001.jpg five\n")
    with pytest.raises(DcganError, match=r"line 1 is not `FILE IDENTITY`.*dcgan download celeba --force"):
        preprocess(PreprocessConfig(source=str(img_dir), out=str(tmp_path / "o"), size=16, workers=1))
    (tmp_path / "celeba" / "identity_CelebA.txt").unlink()
    (tmp_path / "celeba" / "list_attr_celeba.txt").unlink()
    with pytest.raises(DcganError, match="--labels celeba needs identity_CelebA.txt"):
        preprocess(PreprocessConfig(source=str(img_dir), out=str(tmp_path / "o"), size=16, workers=1, labels="celeba"))
    # auto without the files: pixels only, as before labels existed
    m = preprocess(PreprocessConfig(source=str(img_dir), out=str(tmp_path / "o"), size=16, workers=1))
    assert "labels" not in m


def test_folder_identities(tmp_path):
    src = tmp_path / "people"
    for person, n in (("bob", 2), ("alice", 3)):
        (src / person).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(src / person / f"{i}.png")
    out = tmp_path / "out"
    m = preprocess(PreprocessConfig(source=str(src), out=str(out), size=16, workers=1, labels="folders"))
    spec = shards.label_specs(m)["identity"]
    assert (spec["source"], spec["classes"]) == ("folders", ["alice", "bob"])
    assert read(out, ("identity",))[1]["identity"].tolist() == [0, 0, 0, 1, 1]
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / "loose.png")
    with pytest.raises(DcganError, match="--labels folders needs every image in a sub-folder.*loose.png"):
        preprocess(PreprocessConfig(source=str(src), out=str(tmp_path / "o2"), size=16, workers=1, labels="folders"))


def test_cli_preprocess_labels_folders(tmp_path):
    from typer.testing import CliRunner

    from dcgan_cli.cli import app

    src = tmp_path / "people"
    for person in ("a", "b"):
        (src / person).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / person / "0.png")
    r = CliRunner().invoke(app, ["preprocess", str(src), "--out", str(tmp_path / "o"), "--size", "16",
                                 "--labels", "folders", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "labels: identity from folders (2 identities)" in r.output
