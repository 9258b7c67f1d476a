"""The loss and D's regularisers (gan/regularize.py): values on known inputs, spectral normalisation's
coverage of D, every option training finite under fp32 and bf16, exact resume with R1 and bCR on,
and the options-off step unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import tiny_config
from dcgan_cli.gan import regularize as reg

ALL_ON = dict(loss="hinge", spectral_norm=True, r1_gamma=1.0, r1_interval=2, bcr=1.0)


def _step(cfg, precision):
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan, make_train_step

    gan = build_gan(cfg, precision)
    return gan, make_train_step(cfg, gan, tf.distribute.get_strategy(), precision)


def _batch():
    import tensorflow as tf

    return tf.cast(tf.random.stateless_uniform([8, 16, 16, 3], [0, 1], maxval=256, dtype=tf.int32), tf.uint8)


def test_hinge_losses_on_known_logits():
    real = np.array([[2.0], [0.5], [-1.0]], np.float32)
    fake = np.array([[-2.0], [0.0], [1.5]], np.float32)
    # relu(1 - r) + relu(1 + f): (0 + 0), (0.5 + 1), (2 + 2.5)
    np.testing.assert_allclose(reg.d_hinge(real, fake).numpy(), [0.0, 1.5, 4.5])
    np.testing.assert_allclose(reg.g_hinge(fake).numpy(), [2.0, 0.0, -1.5])


def test_bcr_transform_is_the_translation_alone():
    import tensorflow as tf

    from dcgan_cli.gan.augment import _translate, diff_augment

    x = tf.random.stateless_uniform([6, 16, 16, 3], [5, 6], -1.0, 1.0)
    u = tf.random.stateless_uniform([6, 12], [7, 8])
    moved = diff_augment(x, reg.translation_only(u), 1.0)
    np.testing.assert_array_equal(moved.numpy(), _translate(x, u, tf.ones([6], tf.bool)).numpy())
    assert not np.array_equal(moved.numpy(), x.numpy())  # the shifts do move the images


def test_spectral_norm_covers_every_kernel_and_embedding_of_d_and_scales_to_unit_norm():
    import keras
    import tensorflow as tf

    from dcgan_cli.gan.model import build_discriminator

    D = build_discriminator(16, 3, 8, labels=3)  # the conditional D: its projection head is a Dense of y
    sn = reg.with_spectral_norm(D)

    def covered(model):
        bare = []
        for layer in model._flatten_layers(include_self=False, recursive=False):
            if isinstance(layer, reg.SpectralNorm):
                continue
            bare += [w.path for w in layer.weights if w.name in reg.NORMALISED]
        return bare

    assert covered(D)  # the walk sees the plain D's kernels: it can fail
    assert covered(sn) == []
    wrapped = [x for x in sn.layers if isinstance(x, reg.SpectralNorm)]
    assert {x.layer.name for x in wrapped} >= {"down0", "down1", "logit", "label_projection"}
    x = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2])
    for _ in range(30):  # power iteration converges: sigma(W / sigma) -> 1
        sn([x, tf.constant([[1.0, -1, 1], [-1, 1, 1], [1, 1, -1], [-1, -1, -1]])], training=True)
    for layer in wrapped:
        w = tf.reshape(layer.normalised(False)[1], [-1, layer.u.shape[-1]])
        assert float(tf.linalg.svd(w, compute_uv=False)[0]) == pytest.approx(1.0, rel=0.05), layer.name


def test_d_without_batch_norm_has_biases_and_spectral_norm_covers_it():
    import keras

    from dcgan_cli.gan.model import build_discriminator

    plain, bare = build_discriminator(16, 3, 8, labels=2), build_discriminator(16, 3, 8, labels=2, norm="none")
    bn = [x for x in plain.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert bn and not [x for x in bare.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert bare.get_layer("down1").use_bias and not plain.get_layer("down1").use_bias
    assert not bare.get_layer("down0").use_bias  # the paper's first layer had neither, and keeps no bias
    wrapped = {x.layer.name for x in reg.with_spectral_norm(bare).layers if isinstance(x, reg.SpectralNorm)}
    assert wrapped >= {"down0", "down1", "logit", "label_projection"}


@pytest.mark.slow
def test_project_reads_the_discriminator_of_a_spectral_norm_run_without_batch_norm(data16, tmp_path):
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan
    from dcgan_cli.generate.repair import load_models
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path, spectral_norm=True, d_norm="none", loss="hinge", epochs=1)
    run = train(cfg, quiet=True, log=lambda m: None)
    # project's D (built on its own, then restored from the checkpoint G came from) against the whole trained
    # GAN restored as a resume restores it: the same logits, and not those of a freshly initialised D
    models = load_models(run)
    gan = build_gan(cfg, "fp32")
    gan.checkpoint().restore(tf.train.latest_checkpoint(str(run / "checkpoints"))).expect_partial()
    fresh = build_gan(cfg, "fp32").discriminator
    x = tf.random.stateless_uniform([4, 16, 16, 3], [9, 9], -1.0, 1.0)
    ours, trained = models.discriminator(x, training=False).numpy(), gan.discriminator(x, training=False).numpy()
    np.testing.assert_allclose(ours, trained, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fresh(x, training=False).numpy(), trained, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_every_option_together_trains_finite_in_mixed_precision(data16, tmp_path, precision):
    # fp32 trains them in the resume test below; each alone is checked by the graph test at the end.
    cases = [dict(ALL_ON, alternate=True), dict(ALL_ON, d_norm="none"),
             dict(ALL_ON, alternate=False, augment="diffaug", augment_p=0.5)]
    for options in cases[: 3 if precision == "bf16" else 1]:
        cfg = tiny_config(data16, tmp_path, **options).with_augment(24)
        gan, step = _step(cfg, precision)
        for _ in range(2):  # R1 on step 0, off on step 1
            out = {k: float(v) for k, v in step(_batch()).items()}
        assert all(np.isfinite(v) for v in out.values()), (options, out)
        assert all(np.isfinite(v.numpy()).all() for v in gan.discriminator.weights), options


def test_r1_gradients_are_zero_off_interval_and_scaled_by_it_on(data16, tmp_path):
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan

    from dcgan_cli.gan.model import build_discriminator

    cfg = tiny_config(data16, tmp_path, r1_gamma=2.0, r1_interval=4)
    D = build_discriminator(16, 3, 8, labels=2)  # conditional: R1 differentiates D(x, y) with y held fixed
    y = tf.constant([[1.0, -1.0]] * 8)

    def d_call(x):
        return D([x, y], training=True)

    real = tf.random.stateless_uniform([8, 16, 16, 3], [3, 4], -1.0, 1.0)
    off, pen_off = reg.lazy_r1(cfg, d_call, D.trainable_variables, real, tf.constant(1, tf.int64), lambda x: x)
    on, pen_on = reg.lazy_r1(cfg, d_call, D.trainable_variables, real, tf.constant(8, tf.int64), lambda x: x)
    assert float(pen_off) == 0.0 and all(float(tf.reduce_max(tf.abs(g))) == 0.0 for g in off)
    _, pen_1 = reg.r1_gradients(d_call, D.trainable_variables, real, 2.0, 1, 8, lambda x: x)
    assert float(pen_on) == pytest.approx(4 * float(pen_1), rel=1e-4) and float(pen_1) > 0
    head = [g for g, v in zip(on, D.trainable_variables) if "label_projection" in v.path]
    assert head and float(tf.reduce_max(tf.abs(head[0]))) > 0  # the projection head is penalised too
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in on)


@pytest.mark.slow
def test_resume_with_r1_and_bcr_gives_the_same_weights_as_one_run(data16, tmp_path):
    import tensorflow as tf

    from dcgan_cli.training.loop import train

    def state(run):
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if not k.startswith(("_CHECKPOINTABLE", "save_counter"))}

    # R1 every 2nd step over 3-step epochs, interrupted at step 1: the lazy schedule crosses the resumes.
    cfg = tiny_config(data16, tmp_path / "a", **ALL_ON, ema=0.5, flip=True, epochs=1)
    straight = train(cfg, quiet=True, log=lambda m: None)
    cfg_b = cfg.replace(runs_dir=str(tmp_path / "b"))
    run = train(cfg_b, quiet=True, log=lambda m: None, max_steps=1)
    run = train(cfg_b, resume=run, quiet=True, log=lambda m: None)
    a, b = state(straight), state(run)
    assert a.keys() == b.keys() and any(k.startswith("discriminator") and "/u/" in k for k in a), sorted(a)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_options_off_add_nothing_to_the_step(data16, tmp_path):
    import tensorflow as tf

    ops = {}
    for name, options in {"off": {}, "r1": dict(r1_gamma=1.0), "bcr": dict(bcr=1.0), "hinge": dict(loss="hinge"),
                          "sn": dict(spectral_norm=True)}.items():
        cfg = tiny_config(data16, tmp_path, **options)
        _, step = _step(cfg, "fp32")
        graph = step.get_concrete_function(tf.zeros([8, 16, 16, 3], tf.uint8)).graph
        ops[name] = {op.type for op in graph.get_operations()}
    # Off: no condition (lazy R1), no folded seed (bCR's stream), no gathers (bCR's translations).
    assert not {"StatelessIf", "If"} & ops["off"] and {"StatelessIf", "If"} & ops["r1"]
    assert "GatherV2" not in ops["off"] and "GatherV2" in ops["bcr"]
    # The BCE's log1p is gone under hinge; spectral normalisation's l2-normalised power iteration is extra.
    assert "Log1p" in ops["off"] and "Log1p" not in ops["hinge"]
    assert len(ops["sn"] - ops["off"]) > 0
