"""The DCGAN paper's vector arithmetic over latent files: `sample --latents "a.npy - b.npy + c.npy"`."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import dcgan_here, ok, one_line_error


def test_parse_reads_signs_scales_and_names_with_dashes():
    from dcgan_cli.generate.latent_math import is_expression, parse

    assert [(w, p.name) for w, p in parse("smiling-woman.npy - neutral-woman.npy + 0.5 * man.npy")] == [
        (1.0, "smiling-woman.npy"), (-1.0, "neutral-woman.npy"), (0.5, "man.npy")]
    assert [w for w, _ in parse("- a.npy + b.npy")] == [-1.0, 1.0]
    assert not is_expression("smiling-woman.npy") and is_expression("a.npy -")
    for bad in ("a.npy -", "a.npy + + b.npy", "a.npy - b.txt", "a.npy - * b.npy"):
        with pytest.raises(Exception, match="with spaces around"):
            parse(bad)


def test_each_file_is_averaged_then_added(tmp_path):
    from dcgan_cli.generate.latent_math import evaluate
    from dcgan_cli.generate.sampling import read_latents

    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=(1, 4))
    for name, z in zip("abc", (a, b, c)):
        np.save(tmp_path / f"{name}.npy", z.astype(np.float32))
    out = evaluate(f"{tmp_path}/a.npy - {tmp_path}/b.npy + {tmp_path}/c.npy", read_latents)
    np.testing.assert_allclose(out[-1], a.mean(0) - b.mean(0) + c[0], rtol=1e-5)
    np.testing.assert_allclose(out[:3], [a.mean(0), b.mean(0), c[0]], rtol=1e-5)


def test_sample_draws_the_means_then_the_result(tiny_run, tmp_path):
    rng = np.random.default_rng(1)
    for name in "abc":
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(3, 8)).astype(np.float32))
    expr = f"{tmp_path / 'a.npy'} - {tmp_path / 'b.npy'} + {tmp_path / 'c.npy'}"
    ok(dcgan_here("sample", "--run", tiny_run, "--latents", expr, "--individual", tmp_path / "arith"))
    z = [np.load(tmp_path / f"{n}.npy").mean(0) for n in "abc"]
    np.save(tmp_path / "r.npy", (z[0] - z[1] + z[2])[None].astype(np.float32))
    ok(dcgan_here("sample", "--run", tiny_run, "--latents", tmp_path / "r.npy", "--individual", tmp_path / "direct"))
    a, b = ((tmp_path / d).joinpath(f) for d, f in (("arith", "latent-0003.png"), ("direct", "latent-0000.png")))
    assert a.read_bytes() == b.read_bytes()
    np.save(tmp_path / "short.npy", np.zeros((2, 5), np.float32))
    one_line_error(dcgan_here("sample", tmp_path / "x.png", "--run", tiny_run, "--latents",
                              f"{tmp_path / 'a.npy'} - {tmp_path / 'short.npy'}"), "5-dim latents", "8-dim")
    one_line_error(dcgan_here("sample", tmp_path / "x.png", "--run", tiny_run, "--latents",
                              f"{tmp_path / 'a.npy'} - {tmp_path / 'gone.npy'}"), "no latents file at")
    assert not (tmp_path / "x.png").exists()
